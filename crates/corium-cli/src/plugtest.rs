//! The ETSI CoAP plugtest resource set, as Californium's plugtest server
//! serves it (ETSI CoAP#1–#4 plugtest test descriptions), plus `/echo`.
//!
//! | path | behaviour |
//! |---|---|
//! | `/test` | GET 2.05 text; POST 2.01 with Location-Path `location1/location2/location3`; PUT 2.04; DELETE 2.02 |
//! | `/separate` | GET answered after 3 s: the endpoint sends an empty ACK, then a separate response (RFC 7252 §5.2.2) |
//! | `/seg1/seg2/seg3` | GET 2.05 (long path) |
//! | `/query` | GET 2.05 echoing the Uri-Query arguments joined by `&` |
//! | `/location-query` | POST 2.01 with Location-Query `first=1` and `second=2` |
//! | `/multi-format` | GET text/plain or application/xml by Accept, 4.06 otherwise (RFC 7252 §5.10.4) |
//! | `/validate` | GET with ETag; 2.03 Valid when an ETag option matches (§5.10.6); PUT changes it |
//! | `/create1` | PUT with If-None-Match: 2.01 once, then 4.12 (§5.10.8.2); DELETE resets |
//! | `/link1` … `/link3` | link attributes for the RFC 6690 §4.1 filtering tests |
//! | `/path`, `/path/sub1` … `/path/sub3` | a hierarchy; `/path` lists its children (ct=40) |
//! | `/large` | a 1280-byte text (Californium's block-art, five 256-byte blocks) |
//! | `/large-update` | GET / PUT a large representation |
//! | `/large-create` | POST creates a large representation (2.01), GET reads it |
//! | `/large-post` | POST with Block1 → 2.04 whose body (the upload, upper-cased) comes back with Block2 (RFC 7959 §2.7) |
//! | `/obs` | the current UTC time, changing every 5 s; observable (RFC 7641), a CON notification every 5 s (rt="observe" obs) |
//! | `/obs-non` | the same with NON notifications |
//! | `/obs-large` | observable and larger than one block: notifications carry block 0 and the client fetches the rest (RFC 7959 §2.6) |
//! | `/echo` | any method: echoes payload and Content-Format |
//!
//! State (ETag, created resources) is shared across requests with
//! [`std::sync::Mutex`]; no lock is held across an `await`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use corium::{
    Code, ContentFormat, Observable, OptionNumber, RequestContext, Resource, Response, Router,
};

/// text/plain; charset=utf-8 (RFC 7252 §12.3).
const TEXT_PLAIN: ContentFormat = ContentFormat(0);
/// application/link-format (RFC 6690 §7.2).
const LINK_FORMAT: ContentFormat = ContentFormat(40);
/// application/xml (RFC 7252 §12.3).
const XML: ContentFormat = ContentFormat(41);

/// How long `/separate` waits before answering: well past the endpoint's
/// `separate_ack_delay`, so the request is acknowledged with an empty ACK.
pub(crate) const SEPARATE_DELAY: Duration = Duration::from_secs(3);

/// The period with which `/obs` changes.
const OBS_PERIOD_SECS: u64 = 5;

/// A text/plain response.
fn text(code: Code, body: impl Into<Vec<u8>>) -> Response {
    let mut r = Response::with_payload(code, body);
    r.set_content_format(TEXT_PLAIN);
    r
}

/// Californium's `Type: 0 (CON)\nCode: 1 (GET)` summary of a request.
fn describe(ctx: &RequestContext) -> String {
    let (ty, name) = if ctx.confirmable {
        (0, "CON")
    } else {
        (1, "NON")
    };
    let method = ctx.request.method;
    format!(
        "Type: {ty} ({name})\nCode: {} ({})",
        method.0,
        method.name().unwrap_or("?")
    )
}

/// The `/large` representation: 1280 bytes, five 256-byte blocks of four
/// 64-byte lines each, so that block boundaries are visible (Californium's
/// plugtest `Large` resource).
pub(crate) fn large_payload() -> String {
    const BLOCKS: usize = 5;
    let mut out = String::with_capacity(BLOCKS * 256);
    for n in 1..=BLOCKS {
        let dashes = "-".repeat(61);
        out.push_str(&format!("/{dashes}\\\n"));
        out.push_str(&format!(
            "|{:^61}|\n",
            format!("RESOURCE BLOCK NO. {n} OF {BLOCKS}")
        ));
        out.push_str(&format!("|{:^61}|\n", "[each line contains 64 bytes]"));
        out.push_str(&format!("\\{dashes}/\n"));
    }
    out
}

/// Minimal non-empty big-endian bytes of an ETag version (1–8 bytes, RFC
/// 7252 §5.10.6).
fn etag_bytes(version: u64) -> Vec<u8> {
    let bytes = version.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(7);
    bytes[skip..].to_vec()
}

/// `YYYY-MM-DD HH:MM:SS UTC` for seconds since the Unix epoch (proleptic
/// Gregorian calendar; Howard Hinnant's `civil_from_days`).
pub(crate) fn utc_string(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Whether an If-Match option list is satisfied by `etag` (RFC 7252
/// §5.10.8.1: an empty value matches any current representation).
fn if_match_ok(ctx: &RequestContext, etag: &[u8]) -> bool {
    let mut values = ctx
        .request
        .options
        .get_all(OptionNumber::IF_MATCH)
        .peekable();
    if values.peek().is_none() {
        return true;
    }
    values.any(|v| v.is_empty() || v == etag)
}

/// A stored representation.
#[derive(Debug, Clone, Default)]
struct Stored {
    payload: Vec<u8>,
    content_format: Option<ContentFormat>,
}

impl Stored {
    /// The stored representation, from a request.
    fn of(ctx: &RequestContext) -> Stored {
        Stored {
            payload: ctx.request.payload.clone(),
            content_format: ctx.request.content_format(),
        }
    }

    /// A response carrying it.
    fn response(&self, code: Code) -> Response {
        let mut r = Response::with_payload(code, self.payload.clone());
        if let Some(cf) = self.content_format {
            r.set_content_format(cf);
        }
        r
    }
}

/// State of `/validate`: the representation and its ETag version.
#[derive(Debug)]
struct Validate {
    stored: Stored,
    version: u64,
}

/// Everything the plugtest resources share.
#[derive(Debug)]
struct State {
    validate: Mutex<Validate>,
    create1: Mutex<Option<Stored>>,
    large_update: Mutex<Stored>,
    large_create: Mutex<Option<Stored>>,
}

impl State {
    fn new() -> State {
        let large = Stored {
            payload: large_payload().into_bytes(),
            content_format: Some(TEXT_PLAIN),
        };
        State {
            validate: Mutex::new(Validate {
                stored: Stored {
                    payload: b"validate".to_vec(),
                    content_format: Some(TEXT_PLAIN),
                },
                version: 1,
            }),
            create1: Mutex::new(None),
            large_update: Mutex::new(large),
            large_create: Mutex::new(None),
        }
    }
}

/// Locks a mutex; a poisoned lock (a panicking handler) still yields the
/// data, which every handler leaves consistent.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn test_get(ctx: RequestContext) -> Response {
    text(Code::CONTENT, describe(&ctx))
}

async fn test_post(_ctx: RequestContext) -> Response {
    let mut r = Response::new(Code::CREATED);
    for seg in ["location1", "location2", "location3"] {
        r.options
            .push(OptionNumber::LOCATION_PATH, seg.as_bytes().to_vec());
    }
    r
}

async fn test_put(_ctx: RequestContext) -> Response {
    Response::new(Code::CHANGED)
}

async fn test_delete(_ctx: RequestContext) -> Response {
    Response::new(Code::DELETED)
}

async fn separate_get(ctx: RequestContext) -> Response {
    tokio::time::sleep(SEPARATE_DELAY).await;
    text(
        Code::CONTENT,
        format!("{}\nseparate response", describe(&ctx)),
    )
}

async fn long_path_get(_ctx: RequestContext) -> Response {
    text(Code::CONTENT, "Long path resource")
}

async fn query_get(ctx: RequestContext) -> Response {
    text(Code::CONTENT, ctx.query().join("&"))
}

async fn location_query_post(_ctx: RequestContext) -> Response {
    let mut r = Response::new(Code::CREATED);
    r.options
        .push(OptionNumber::LOCATION_QUERY, b"first=1".to_vec());
    r.options
        .push(OptionNumber::LOCATION_QUERY, b"second=2".to_vec());
    r
}

async fn multi_format_get(ctx: RequestContext) -> Response {
    let ty = if ctx.confirmable { "CON" } else { "NON" };
    let code = ctx.request.method.0;
    match ctx.request.accept() {
        None | Some(TEXT_PLAIN) => text(
            Code::CONTENT,
            format!("Status type: \"{ty}\"\nCode: \"{code}\""),
        ),
        Some(XML) => {
            let mut r = Response::with_payload(
                Code::CONTENT,
                format!("<msg type=\"{ty}\" code=\"{code}\"/>"),
            );
            r.set_content_format(XML);
            r
        }
        Some(_) => text(
            Code::NOT_ACCEPTABLE,
            "only text/plain (0) and application/xml (41)",
        ),
    }
}

/// `/path` lists its children.
async fn path_get(_ctx: RequestContext) -> Response {
    let mut r = Response::with_payload(Code::CONTENT, "</path/sub1>,</path/sub2>,</path/sub3>");
    r.set_content_format(LINK_FORMAT);
    r
}

async fn path_sub_get(ctx: RequestContext) -> Response {
    text(Code::CONTENT, ctx.path())
}

async fn link_get(ctx: RequestContext) -> Response {
    text(Code::CONTENT, ctx.path())
}

async fn obs_get(_ctx: RequestContext) -> Response {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let tick = now - now % OBS_PERIOD_SECS;
    let mut r = text(Code::CONTENT, utc_string(tick));
    // RFC 7252 §5.10.5: fresh until the next change.
    let max_age = u32::try_from(tick + OBS_PERIOD_SECS - now).unwrap_or(0);
    r.options.push_uint(OptionNumber::MAX_AGE, max_age);
    r
}

/// `/obs-large`: the `/obs` time and 1600 bytes that change with it, so every
/// notification is larger than one block (RFC 7959 §2.6).
async fn obs_large_get(ctx: RequestContext) -> Response {
    let mut r = obs_get(ctx).await;
    let stamp = String::from_utf8_lossy(&r.payload).into_owned();
    let line = format!("{stamp} observable and larger than one block\n");
    r.payload = line.repeat(1 + 1600 / line.len()).into_bytes();
    r
}

/// Notifies the observers of the `/obs` resources at every 5-second boundary (RFC
/// 7641 §4.2), each `(resource, confirmable)` as it asks. Needs a tokio runtime;
/// without one (unit tests) the resources are observable but never notify.
fn spawn_obs_ticker(observables: Vec<(Observable, bool)>) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    handle.spawn(async move {
        loop {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let into_period = now.as_millis() % u128::from(OBS_PERIOD_SECS * 1000);
            let wait = u64::try_from(u128::from(OBS_PERIOD_SECS * 1000) - into_period)
                .unwrap_or(OBS_PERIOD_SECS * 1000);
            // A little past the boundary, so that the handler sees the new tick.
            tokio::time::sleep(Duration::from_millis(wait + 10)).await;
            for (obs, confirmable) in &observables {
                if *confirmable {
                    obs.notify_confirmable();
                } else {
                    obs.notify();
                }
            }
        }
    });
}

async fn echo(ctx: RequestContext) -> Response {
    let code = match ctx.request.method {
        Code::GET | Code::FETCH => Code::CONTENT,
        Code::DELETE => Code::DELETED,
        _ => Code::CHANGED,
    };
    Stored::of(&ctx).response(code)
}

/// The plugtest router (see the module documentation).
pub(crate) fn router() -> Router {
    let state = Arc::new(State::new());
    let (obs, obs_non, obs_large) = (Observable::new(), Observable::new(), Observable::new());
    spawn_obs_ticker(vec![
        (obs.clone(), true),
        (obs_non.clone(), false),
        (obs_large.clone(), false),
    ]);

    let validate = {
        let get_state = Arc::clone(&state);
        let put_state = Arc::clone(&state);
        Resource::new()
            .get(move |ctx: RequestContext| {
                let state = Arc::clone(&get_state);
                async move {
                    let v = lock(&state.validate);
                    let etag = etag_bytes(v.version);
                    // RFC 7252 §5.10.6.2: a matching ETag gets 2.03 Valid.
                    let mut r = if ctx
                        .request
                        .options
                        .get_all(OptionNumber::ETAG)
                        .any(|e| e == etag)
                    {
                        Response::new(Code::VALID)
                    } else {
                        v.stored.response(Code::CONTENT)
                    };
                    r.options.push(OptionNumber::ETAG, etag);
                    r
                }
            })
            .put(move |ctx: RequestContext| {
                let state = Arc::clone(&put_state);
                async move {
                    let mut v = lock(&state.validate);
                    if !if_match_ok(&ctx, &etag_bytes(v.version)) {
                        return Response::new(Code::PRECONDITION_FAILED);
                    }
                    v.stored = Stored::of(&ctx);
                    v.version += 1;
                    let mut r = Response::new(Code::CHANGED);
                    r.options.push(OptionNumber::ETAG, etag_bytes(v.version));
                    r
                }
            })
            .title("Resource which varies")
            .ct(0)
    };

    let create1 = {
        let (get_state, put_state, delete_state) =
            (Arc::clone(&state), Arc::clone(&state), Arc::clone(&state));
        Resource::new()
            .get(move |_ctx: RequestContext| {
                let state = Arc::clone(&get_state);
                async move {
                    match &*lock(&state.create1) {
                        Some(stored) => stored.response(Code::CONTENT),
                        None => Response::new(Code::NOT_FOUND),
                    }
                }
            })
            .put(move |ctx: RequestContext| {
                let state = Arc::clone(&put_state);
                async move {
                    let mut slot = lock(&state.create1);
                    let exists = slot.is_some();
                    // RFC 7252 §5.10.8.2: If-None-Match fails when the
                    // target exists.
                    if exists && ctx.request.options.contains(OptionNumber::IF_NONE_MATCH) {
                        return Response::new(Code::PRECONDITION_FAILED);
                    }
                    *slot = Some(Stored::of(&ctx));
                    Response::new(if exists { Code::CHANGED } else { Code::CREATED })
                }
            })
            .delete(move |_ctx: RequestContext| {
                let state = Arc::clone(&delete_state);
                async move {
                    *lock(&state.create1) = None;
                    Response::new(Code::DELETED)
                }
            })
            .title("Resource which does not exist yet (to perform atomic PUT)")
    };

    let large_update = {
        let (get_state, put_state) = (Arc::clone(&state), Arc::clone(&state));
        Resource::new()
            .get(move |_ctx: RequestContext| {
                let state = Arc::clone(&get_state);
                async move { lock(&state.large_update).response(Code::CONTENT) }
            })
            .put(move |ctx: RequestContext| {
                let state = Arc::clone(&put_state);
                async move {
                    *lock(&state.large_update) = Stored::of(&ctx);
                    Response::new(Code::CHANGED)
                }
            })
            .rt("block")
            .sz(1280)
            .title("Large resource that can be updated using PUT method")
    };

    let large_create = {
        let (get_state, post_state) = (Arc::clone(&state), Arc::clone(&state));
        Resource::new()
            .get(move |_ctx: RequestContext| {
                let state = Arc::clone(&get_state);
                async move {
                    match &*lock(&state.large_create) {
                        Some(stored) => stored.response(Code::CONTENT),
                        None => Response::new(Code::NOT_FOUND),
                    }
                }
            })
            .post(move |ctx: RequestContext| {
                let state = Arc::clone(&post_state);
                async move {
                    *lock(&state.large_create) = Some(Stored::of(&ctx));
                    let mut r = Response::new(Code::CREATED);
                    r.options
                        .push(OptionNumber::LOCATION_PATH, b"large-create".to_vec());
                    r
                }
            })
            .rt("block")
            .title("Large resource that can be created using POST method")
    };

    let large = large_payload();
    let large_len = large.len() as u64;

    Router::new()
        .route(
            "/test",
            Resource::new()
                .get(test_get)
                .post(test_post)
                .put(test_put)
                .delete(test_delete)
                .rt("test")
                .title("Default test resource"),
        )
        .route(
            "/separate",
            Resource::new()
                .get(separate_get)
                .title("Resource which cannot be served immediately and which cannot be acknowledged in a piggy-backed way"),
        )
        .route(
            "/seg1/seg2/seg3",
            Resource::new().get(long_path_get).title("Long path resource"),
        )
        .route(
            "/query",
            Resource::new()
                .get(query_get)
                .title("Resource accepting query parameters"),
        )
        .route(
            "/location-query",
            Resource::new()
                .post(location_query_post)
                .title("Perform POST transaction with responses containing several Location-Query options (CON mode)"),
        )
        .route(
            "/multi-format",
            Resource::new()
                .get(multi_format_get)
                .ct(0)
                .ct(41)
                .title("Resource that exists in different content formats (text/plain utf8 and application/xml)"),
        )
        .route("/validate", validate)
        .route("/create1", create1)
        .route(
            "/link1",
            Resource::new()
                .get(link_get)
                .rt("Type1")
                .rt("Type2")
                .if_("If1")
                .title("Link test resource"),
        )
        .route(
            "/link2",
            Resource::new()
                .get(link_get)
                .rt("Type2")
                .rt("Type3")
                .if_("If2")
                .title("Link test resource"),
        )
        .route(
            "/link3",
            Resource::new()
                .get(link_get)
                .rt("Type1")
                .rt("Type3")
                .if_("foo")
                .title("Link test resource"),
        )
        .route(
            "/path",
            Resource::new()
                .get(path_get)
                .ct(40)
                .title("Hierarchical link description entry"),
        )
        .route(
            "/path/sub1",
            Resource::new()
                .get(path_sub_get)
                .title("Hierarchical link description sub-resource"),
        )
        .route(
            "/path/sub2",
            Resource::new()
                .get(path_sub_get)
                .title("Hierarchical link description sub-resource"),
        )
        .route(
            "/path/sub3",
            Resource::new()
                .get(path_sub_get)
                .title("Hierarchical link description sub-resource"),
        )
        .route(
            "/large",
            Resource::new()
                .get(move |_ctx: RequestContext| {
                    let body = large.clone();
                    async move { text(Code::CONTENT, body) }
                })
                .rt("block")
                .sz(large_len)
                .title("Large resource"),
        )
        .route("/large-update", large_update)
        .route("/large-create", large_create)
        .route(
            "/large-post",
            Resource::new()
                .post(|ctx: RequestContext| async move {
                    // Two-way block-wise (RFC 7959 §2.7): a large upload answered with a
                    // large body; its later blocks come from the endpoint's kept response.
                    let mut r = Response::with_payload(
                        Code::CHANGED,
                        ctx.request.payload.to_ascii_uppercase(),
                    );
                    if let Some(cf) = ctx.request.content_format() {
                        r.set_content_format(cf);
                    }
                    r
                })
                .rt("block")
                .title("Handle POST with two-way blockwise transfer"),
        )
        .route(
            "/obs",
            Resource::new()
                .get(obs_get)
                .rt("observe")
                .observable(&obs)
                .title("Observable resource which changes every 5 seconds"),
        )
        .route(
            "/obs-non",
            Resource::new()
                .get(obs_get)
                .rt("observe")
                .observable(&obs_non)
                .title("Observable resource which changes every 5 seconds (NON notifications)"),
        )
        .route(
            "/obs-large",
            Resource::new()
                .get(obs_large_get)
                .rt("observe")
                .observable(&obs_large)
                .title("Large observable resource which changes every 5 seconds"),
        )
        .route(
            "/echo",
            Resource::new()
                .get(echo)
                .post(echo)
                .put(echo)
                .delete(echo)
                .fetch(echo)
                .patch(echo)
                .ipatch(echo)
                .title("Echoes the payload and Content-Format of any method"),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_is_1280_bytes_of_64_byte_lines() {
        let p = large_payload();
        assert_eq!(p.len(), 1280);
        assert!(p.lines().all(|l| l.len() == 63), "{p}");
        assert!(p[256..].starts_with("/---"));
        assert!(p.contains("RESOURCE BLOCK NO. 5 OF 5"));
    }

    #[test]
    fn etags_are_minimal_and_non_empty() {
        assert_eq!(etag_bytes(0), [0]);
        assert_eq!(etag_bytes(1), [1]);
        assert_eq!(etag_bytes(0x1234), [0x12, 0x34]);
        assert_eq!(etag_bytes(u64::MAX).len(), 8);
    }

    #[test]
    fn utc_strings() {
        assert_eq!(utc_string(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_string(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_string(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn router_builds() {
        let _ = router();
    }
}
