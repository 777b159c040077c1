//! `float take|release|announce ADDR/PREFIX DEV`: the floating address
//! operations of qnetd-ha on their own (tests/ha/publish-experiment.sh uses
//! it for the floating-address measurement).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [op, cidr, dev] = args.as_slice() else {
        eprintln!("usage: float take|release|announce ADDR/PREFIX DEV");
        std::process::exit(2);
    };
    let fa = match qnetd_ha::FloatingAddress::parse(cidr, dev) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("float: {e}");
            std::process::exit(2);
        }
    };
    let r = match op.as_str() {
        "take" => fa.take(),
        "release" => fa.release(),
        "announce" => fa.announce(),
        _ => {
            eprintln!("usage: float take|release|announce ADDR/PREFIX DEV");
            std::process::exit(2);
        }
    };
    if let Err(e) = r {
        eprintln!("float: {e}");
        std::process::exit(1);
    }
}
