//! Tests of the connection driver: the size of a connection's future.

use super::*;

/// The memory an idle connection's task holds is mostly its future:
/// keep it small (BENCHMARKS.md, per-connection memory). A limit, not
/// a measurement: the figure depends on the compiler and tokio.
#[test]
fn the_connection_future_stays_small() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = TcpStream::connect(addr).await.unwrap();
        let arbiter = qnetd_core::arbiter::Arbiter::for_tests(
            qnetd_core::config::Settings::default(),
            Instant::now(),
        );
        let ctx = Arc::new(ServerCtx::new(arbiter, None, 0, None, 16));
        let admitted = ctx.admit(addr).expect("room for one connection");
        let fut = serve(stream, addr, ctx, Arc::default(), admitted);
        let size = std::mem::size_of_val(&fut);
        println!("connection future: {size} bytes");
        assert!(size <= 1024, "the connection future grew to {size} bytes");
    });
}
