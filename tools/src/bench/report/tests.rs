//! Tests of the bench report: histograms, percentiles, the /proc sample and
//! the ratio table.

use super::*;

#[test]
fn decision_histogram() {
    let page = |a: u64, b: u64, c: u64| {
        format!(
            "# TYPE x histogram\nqnetd_decision_latency_seconds_bucket{{le=\"0.0001\"}} {a}\n\
             qnetd_decision_latency_seconds_bucket{{le=\"0.001\"}} {b}\n\
             qnetd_decision_latency_seconds_bucket{{le=\"+Inf\"}} {c}\n"
        )
    };
    let before = parse_decision_buckets(&page(5, 5, 5));
    let after = parse_decision_buckets(&page(95, 105, 105));
    let d = decision_between(&before, &after).unwrap();
    assert_eq!(d.count, 100);
    assert_eq!(
        (d.p50_le_ms, d.p99_le_ms, d.max_le_ms),
        (0.1, 1.0, Some(1.0))
    );
    let after = parse_decision_buckets(&page(95, 100, 106));
    assert_eq!(decision_between(&before, &after).unwrap().max_le_ms, None);
    assert!(decision_between(&before, &before).is_none());
    assert!(
        parse_decision_buckets("garbage\nqnetd_decision_latency_seconds_bucket{le=\"x\"} 1")
            .is_empty()
    );
}

#[test]
fn percentiles() {
    let l = Latency::from_ms((1..=100).map(f64::from).collect());
    assert_eq!(
        (l.p50_ms, l.p99_ms, l.max_ms, l.count),
        (50.0, 99.0, 100.0, 100)
    );
    let l = Latency::from_ms(vec![3.0]);
    assert_eq!((l.p50_ms, l.p99_ms, l.max_ms), (3.0, 3.0, 3.0));
    assert_eq!(Latency::from_ms(vec![]), Latency::default());
}

#[test]
fn own_process_sample() {
    let s = sample_proc(std::process::id()).expect("own /proc entry");
    assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib);
    assert!(sample_proc(u32::MAX).is_none());
}

#[test]
fn ratio_table_has_a_row_per_figure() {
    let mut a = Report {
        workload: "connect-storm".into(),
        clients: 4,
        ok: true,
        ..Default::default()
    };
    a.connect.wall_s = 1.0;
    let mut b = a.clone();
    b.connect.wall_s = 4.0;
    let t = ratio_table(&[(a, b)]);
    assert!(
        t.contains("| connect-storm | 4 | connect: all voting (s) | 1 | 4 | 0.25 |"),
        "{t}"
    );
}
