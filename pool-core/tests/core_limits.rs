//! A request the pool refuses spends no rate-limit permit, and the refusal names the endpoint.

use std::time::Duration;

use pool_core::{
    Checkout, Core, Decision, EndpointSpec, Outcome, Protocol, Reject, RejectReason, Request, SessionConfig, Time,
};

#[test]
fn a_full_pool_spends_no_permit_and_names_the_endpoint() {
    let config = SessionConfig {
        rate_limit_per_minute: Some(60),
        rate_limit_burst: 2,
        sync_pool_block: false,
        async_limit_total: 1,
        async_limit_per_host: 1,
        sync_pool_connections: 1,
        sync_pool_maxsize: 1,
        ..SessionConfig::default()
    };
    let mut core = Core::new(config, &[EndpointSpec::default(), EndpointSpec::default()], Time::ZERO).unwrap();
    let now = Time::ZERO + Duration::from_secs(1);
    let request = Request { avoid: 0b10, ..Request::new(now + Duration::from_secs(30)) };
    let Decision::Proceed { ticket, checkout: Checkout::Connect(conn) } = core.begin(now, &request) else {
        panic!("the first request connects")
    };
    core.pool_mut().on_connected(now, conn, Protocol::Http1);
    match core.begin(now, &request) {
        Decision::Reject(RejectReason::PoolFull { endpoint: 0, reject: Reject::Full }) => {}
        other => panic!("the full pool refuses, naming endpoint 0: {other:?}"),
    }
    core.finish(now, ticket, Outcome::Success);
    core.pool_mut().release(now, conn, true);
    // The second permit of the burst is still there: the refusal did not spend it.
    assert!(matches!(core.begin(now, &request), Decision::Proceed { checkout: Checkout::Reuse(_), .. }));
    assert!(matches!(core.begin(now, &request), Decision::WaitUntil { .. } | Decision::Reject(_)));
}
