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

#[test]
fn a_request_sent_again_deposits_into_the_retry_budget_once() {
    let mut config = SessionConfig::default();
    config.retry.budget.retry_percent = 0.5;
    config.retry.budget.min_per_sec = 0;
    let mut core = Core::new(config, &[EndpointSpec::default()], Time::ZERO).unwrap();
    let now = Time::ZERO + Duration::from_secs(1);
    let request = Request::new(now + Duration::from_secs(30));
    let balance = |core: &Core| core.retry_policy().budget().balance(now);
    let sent = |core: &mut Core, request: &Request| {
        let Decision::Proceed { ticket, .. } = core.begin(now, request) else { panic!("admitted") };
        core.abandon(now, ticket);
    };
    sent(&mut core, &request);
    let once = balance(&core);
    assert!(once > 0.0, "the first attempt deposits");
    // The server had closed the kept-alive connection: the same attempt, sent again.
    sent(&mut core, &request.again());
    assert_eq!(balance(&core), once, "no second deposit for the same request");
}
