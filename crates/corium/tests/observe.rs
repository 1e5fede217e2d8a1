//! Observe (RFC 7641) over loopback: `Observable` resources and `Client::observe`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use corium::{
    Code, Observable, Observation, OptionNumber, RequestContext, Resource, Response, Router,
};

mod common;
use common::{client, start, Running, LIMIT};

/// A counter resource: GET returns the state; `calls` counts GET handler runs. A state
/// of 99 makes the handler answer 4.04.
struct Counter {
    state: Arc<AtomicU32>,
    calls: Arc<AtomicU32>,
    obs: Observable,
}

impl Counter {
    fn new() -> Counter {
        Counter {
            state: Arc::new(AtomicU32::new(0)),
            calls: Arc::new(AtomicU32::new(0)),
            obs: Observable::new(),
        }
    }

    fn resource(&self) -> Resource {
        let (state, calls) = (self.state.clone(), self.calls.clone());
        Resource::new()
            .get(move |_ctx: RequestContext| {
                let (state, calls) = (state.clone(), calls.clone());
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    match state.load(Ordering::SeqCst) {
                        99 => Response::new(Code::NOT_FOUND),
                        n => Response::with_payload(Code::CONTENT, n.to_string()),
                    }
                }
            })
            .observable(&self.obs)
    }

    fn set(&self, n: u32) {
        self.state.store(n, Ordering::SeqCst);
        self.obs.notify();
    }
}

async fn next(o: &mut Observation) -> Option<Response> {
    tokio::time::timeout(LIMIT, o.next())
        .await
        .expect("notification in time")
        .map(|r| r.expect("no error"))
}

fn seq(r: &Response) -> u32 {
    r.options
        .get_uint(OptionNumber::OBSERVE)
        .expect("Observe option")
}

async fn wait_for_observers(obs: &Observable, n: usize) {
    tokio::time::timeout(LIMIT, async {
        while obs.observer_count() != n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("observer count reached");
}

#[tokio::test]
async fn notifications_arrive_in_order() {
    let counter = Counter::new();
    let server = start(Router::new().route("/counter", counter.resource())).await;
    let client = client().await;
    let mut o = client.observe(&server.uri("/counter")).await.unwrap();
    let first = next(&mut o).await.unwrap();
    assert_eq!(first.payload, b"0");
    wait_for_observers(&counter.obs, 1).await;
    let mut last = seq(&first);
    for n in 1..=3u32 {
        counter.set(n);
        let r = next(&mut o).await.unwrap();
        assert_eq!(r.payload, n.to_string().as_bytes());
        assert!(seq(&r) > last);
        last = seq(&r);
    }
    drop(o);
    server.shutdown().await;
}

/// The GET handler runs once per change, not once per observer.
#[tokio::test]
async fn handler_runs_once_for_many_observers() {
    let counter = Counter::new();
    let server = start(Router::new().route("/counter", counter.resource())).await;
    let client = client().await;
    let mut observations = Vec::new();
    for _ in 0..3 {
        let mut o = client.observe(&server.uri("/counter")).await.unwrap();
        assert_eq!(next(&mut o).await.unwrap().payload, b"0");
        observations.push(o);
    }
    wait_for_observers(&counter.obs, 3).await;
    assert_eq!(counter.calls.load(Ordering::SeqCst), 3);
    counter.set(7);
    for o in &mut observations {
        assert_eq!(next(o).await.unwrap().payload, b"7");
    }
    assert_eq!(counter.calls.load(Ordering::SeqCst), 4);
    server.shutdown().await;
}

/// Dropping the observation forgets it: the next notification is answered with RST,
/// which ends the relation on the server (RFC 7641 §3.6).
#[tokio::test]
async fn drop_cancels_passively() {
    let counter = Counter::new();
    let server = start(Router::new().route("/counter", counter.resource())).await;
    let client = client().await;
    let mut o = client.observe(&server.uri("/counter")).await.unwrap();
    next(&mut o).await.unwrap();
    wait_for_observers(&counter.obs, 1).await;
    drop(o);
    // Give the cancel a moment to reach the driver, then change the state.
    tokio::time::sleep(Duration::from_millis(50)).await;
    counter.set(1);
    wait_for_observers(&counter.obs, 0).await;
    server.shutdown().await;
}

/// `cancel` deregisters with GET Observe = 1 and the same token (RFC 7641 §3.6).
#[tokio::test]
async fn cancel_deregisters_actively() {
    let counter = Counter::new();
    let server = start(Router::new().route("/counter", counter.resource())).await;
    let client = client().await;
    let mut o = client.observe(&server.uri("/counter")).await.unwrap();
    next(&mut o).await.unwrap();
    wait_for_observers(&counter.obs, 1).await;
    let answer = tokio::time::timeout(LIMIT, o.cancel())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.code, Code::CONTENT);
    assert!(!answer.options.contains(OptionNumber::OBSERVE));
    assert_eq!(counter.obs.observer_count(), 0);
    server.shutdown().await;
}

/// A resource that is not observable answers once; the observation then ends.
#[tokio::test]
async fn plain_resource_is_not_observable() {
    let router = Router::new().route(
        "/plain",
        Resource::new()
            .get(|_ctx: RequestContext| async { Response::with_payload(Code::CONTENT, "p") }),
    );
    let server = start(router).await;
    let client = client().await;
    let mut o = client.observe(&server.uri("/plain")).await.unwrap();
    let first = next(&mut o).await.unwrap();
    assert_eq!(first.payload, b"p");
    assert!(!first.options.contains(OptionNumber::OBSERVE));
    assert!(next(&mut o).await.is_none());
    server.shutdown().await;
}

/// An error notification ends the observation on both sides (RFC 7641 §3.2).
#[tokio::test]
async fn error_notification_ends_observation() {
    let counter = Counter::new();
    let server = start(Router::new().route("/counter", counter.resource())).await;
    let client = client().await;
    let mut o = client.observe(&server.uri("/counter")).await.unwrap();
    next(&mut o).await.unwrap();
    wait_for_observers(&counter.obs, 1).await;
    counter.set(99);
    assert_eq!(next(&mut o).await.unwrap().code, Code::NOT_FOUND);
    assert!(next(&mut o).await.is_none());
    assert_eq!(counter.obs.observer_count(), 0);
    server.shutdown().await;
}

/// `obs` in `/.well-known/core` (RFC 7641 §6).
#[tokio::test]
async fn observable_is_advertised() {
    let counter = Counter::new();
    let router = Router::new().route("/counter", counter.resource());
    assert_eq!(router.link_format(), "</counter>;obs");
}

/// RFC 7959 §2.6: a large notification arrives as block 0; the observation completes it.
#[tokio::test]
async fn large_notifications_are_completed() {
    let size = Arc::new(AtomicU32::new(10));
    let obs = Observable::new();
    let s = size.clone();
    let router = Router::new().route(
        "/big",
        Resource::new()
            .get(move |_ctx: RequestContext| {
                let n = s.load(Ordering::SeqCst) as usize;
                async move { Response::with_payload(Code::CONTENT, "x".repeat(n)) }
            })
            .observable(&obs),
    );
    let server = start(router).await;
    let client = client().await;
    let mut o = client.observe(&server.uri("/big")).await.unwrap();
    assert_eq!(next(&mut o).await.unwrap().payload.len(), 10);
    wait_for_observers(&obs, 1).await;
    size.store(3000, Ordering::SeqCst);
    obs.notify();
    let r = next(&mut o).await.unwrap();
    assert_eq!(r.payload.len(), 3000);
    assert!(r.options.contains(OptionNumber::OBSERVE));
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// Conditional attributes (draft-ietf-core-conditional-attributes-12)
// ---------------------------------------------------------------------------

async fn observe_counter(query: &str) -> (Counter, Running, Observation) {
    let counter = Counter::new();
    let server = start(Router::new().route("/counter", counter.resource())).await;
    let client = client().await;
    let mut o = client
        .observe(&server.uri(&format!("/counter?{query}")))
        .await
        .unwrap();
    assert_eq!(next(&mut o).await.unwrap().payload, b"0");
    wait_for_observers(&counter.obs, 1).await;
    (counter, server, o)
}

/// c.gt: a notification when the value crosses the threshold, either way.
#[tokio::test]
async fn conditional_greater_than() {
    let (counter, server, mut o) = observe_counter("c.gt=10").await;
    counter.set(5); // below: nothing
    counter.set(12); // crosses upwards
    assert_eq!(next(&mut o).await.unwrap().payload, b"12");
    counter.set(15); // still above: nothing
    counter.set(8); // crosses downwards
    assert_eq!(next(&mut o).await.unwrap().payload, b"8");
    drop(o);
    server.shutdown().await;
}

/// c.st: a notification when the value moved at least the step from the last one
/// reported.
#[tokio::test]
async fn conditional_step() {
    let (counter, server, mut o) = observe_counter("c.st=5").await;
    counter.set(3);
    counter.set(6);
    assert_eq!(next(&mut o).await.unwrap().payload, b"6");
    counter.set(8);
    counter.set(10);
    counter.set(1);
    assert_eq!(next(&mut o).await.unwrap().payload, b"1");
    drop(o);
    server.shutdown().await;
}

/// c.pmin: changes within the minimum period are held back; the newest goes out
/// when it ends.
#[tokio::test]
async fn conditional_minimum_period() {
    let (counter, server, mut o) = observe_counter("c.pmin=2").await;
    counter.set(1);
    counter.set(2);
    counter.set(3);
    assert_eq!(next(&mut o).await.unwrap().payload, b"3");
    drop(o);
    server.shutdown().await;
}

/// c.pmax: a notification at least every period, changed or not.
#[tokio::test]
async fn conditional_maximum_period() {
    let (counter, server, mut o) = observe_counter("c.pmax=0.2").await;
    let a = next(&mut o).await.unwrap();
    let b = next(&mut o).await.unwrap();
    assert_eq!((&a.payload[..], &b.payload[..]), (&b"0"[..], &b"0"[..]));
    assert!(seq(&b) > seq(&a));
    // The handler ran again for each forced notification.
    assert!(counter.calls.load(Ordering::SeqCst) >= 3);
    drop(o);
    server.shutdown().await;
}

/// Invalid conditional attributes are answered 4.00 and register nothing.
#[tokio::test]
async fn conditional_invalid_values() {
    let counter = Counter::new();
    let server = start(Router::new().route("/counter", counter.resource())).await;
    let client = client().await;
    for query in [
        "c.pmin=0",
        "c.st=-1",
        "c.pmin=2&c.pmax=1",
        "c.gt=abc",
        "c.edge=2",
        "c.band",
        "c.epmin=2&c.epmax=1",
    ] {
        let mut o = client
            .observe(&server.uri(&format!("/counter?{query}")))
            .await
            .unwrap();
        let r = next(&mut o).await.unwrap();
        assert_eq!(r.code, Code::BAD_REQUEST, "{query}");
        assert!(next(&mut o).await.is_none(), "{query}");
    }
    assert_eq!(counter.obs.observer_count(), 0);
    server.shutdown().await;
}
