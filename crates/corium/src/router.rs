//! The router: path patterns over decoded Uri-Path segments (RFC 7252 §5.10.1), method
//! dispatch (4.05 when the path exists but not the method, §5.9.2.6), 4.04 for unknown
//! paths (§5.9.2.5), and `/.well-known/core` (RFC 6690 §4).

use std::cmp::Ordering;
use std::fmt;
use std::sync::{Arc, OnceLock};

use corium_proto::wire::{Code, PercentEncoded, UriComponent};
use corium_proto::{Request, Response};

use crate::resource::{Handler, Resource};
use crate::well_known::{WellKnown, WELL_KNOWN_CORE};

/// Path parameters captured by a route: `(name, value)`.
pub(crate) type Params = Vec<(Arc<str>, String)>;

/// One segment of a path pattern.
#[derive(Clone, Debug)]
enum Segment {
    /// Must equal the Uri-Path segment byte for byte.
    Literal(Box<[u8]>),
    /// `{name}`: any one segment.
    Param(Arc<str>),
    /// `{*name}`: the rest of the path, zero or more segments, joined with `/`.
    Tail(Arc<str>),
}

impl Segment {
    /// Specificity: a literal beats a parameter, which beats a tail.
    fn rank(&self) -> u8 {
        match self {
            Segment::Literal(_) => 2,
            Segment::Param(_) => 1,
            Segment::Tail(_) => 0,
        }
    }
}

#[derive(Clone)]
struct Route {
    pattern: String,
    segments: Vec<Segment>,
    resource: Resource,
}

impl Route {
    /// Matches the decoded Uri-Path segments; `capture` collects parameters.
    fn matches<'r>(
        &self,
        mut path: impl Iterator<Item = &'r [u8]>,
        mut capture: Option<&mut Params>,
    ) -> bool {
        for segment in &self.segments {
            match segment {
                Segment::Literal(lit) => match path.next() {
                    Some(s) if s == &lit[..] => {}
                    _ => return false,
                },
                Segment::Param(name) => match path.next() {
                    Some(s) => {
                        if let Some(params) = capture.as_deref_mut() {
                            params.push((name.clone(), String::from_utf8_lossy(s).into_owned()));
                        }
                    }
                    None => return false,
                },
                Segment::Tail(name) => {
                    if let Some(params) = capture.as_deref_mut() {
                        let mut rest = Vec::new();
                        for (i, s) in path.enumerate() {
                            if i > 0 {
                                rest.push(b'/');
                            }
                            rest.extend_from_slice(s);
                        }
                        params.push((name.clone(), String::from_utf8_lossy(&rest).into_owned()));
                    }
                    return true;
                }
            }
        }
        path.next().is_none()
    }

    /// Orders routes by specificity, segment by segment; `Greater` is more specific.
    fn specificity(&self, other: &Route) -> Ordering {
        for (a, b) in self.segments.iter().zip(&other.segments) {
            match a.rank().cmp(&b.rank()) {
                Ordering::Equal => {}
                unequal => return unequal,
            }
        }
        // Equal prefixes: the pattern without a trailing tail is more specific.
        self.segments.len().cmp(&other.segments.len())
    }

    /// The link target for `/.well-known/core`, for patterns without parameters.
    fn href(&self) -> Option<String> {
        let mut href = String::new();
        for segment in &self.segments {
            let Segment::Literal(lit) = segment else {
                return None;
            };
            href.push('/');
            href.push_str(
                &PercentEncoded {
                    bytes: lit,
                    component: UriComponent::PathSegment,
                }
                .to_string(),
            );
        }
        if href.is_empty() {
            href.push('/');
        }
        Some(href)
    }
}

/// What the router decided for a request.
pub(crate) enum Resolution {
    /// Run this handler with these parameters; the resource's notifier if it is
    /// observable (RFC 7641).
    Handler(Arc<dyn Handler>, Params, Option<crate::Observable>),
    /// Answer with this right away.
    Respond(Response),
}

/// Maps paths to [`Resource`]s.
///
/// Patterns are `/`-separated; each segment is a literal (compared with the decoded
/// Uri-Path option, RFC 7252 §5.10.1), `{name}` (one segment, read with
/// [`RequestContext::param`](crate::RequestContext::param)) or, last, `{*name}` (the rest
/// of the path, zero or more segments joined with `/`). A trailing `/` is a segment of
/// its own: `"/a/"` matches the Uri-Path `a`, `""` and not `a`. When several patterns
/// match, the most specific wins (literal over parameter over tail, segment by segment),
/// then the first registered.
///
/// The router answers 4.04 Not Found when no pattern matches, 4.05 Method Not Allowed
/// when a pattern matches but has no handler for the method, and serves
/// `/.well-known/core` (GET only) from the resources' link attributes unless a route
/// claims that path itself.
///
/// ```
/// use corium::{Code, RequestContext, Resource, Response, Router};
///
/// let router = Router::new()
///     .route("/test", Resource::new().get(|_ctx: RequestContext| async {
///         Response::with_payload(Code::CONTENT, "hello")
///     }))
///     .route("/things/{id}", Resource::new().get(|ctx: RequestContext| async move {
///         Response::with_payload(Code::CONTENT, ctx.param("id").unwrap_or("").to_owned())
///     }));
/// ```
#[derive(Clone)]
pub struct Router {
    routes: Vec<Route>,
    /// Rendered on first use, after the routes are final.
    well_known: OnceLock<WellKnown>,
    /// Built on first use: which routes can match a path, by its first segment.
    index: OnceLock<RouteIndex>,
}

/// The routes that can match a path, by the path's first segment: those whose pattern
/// starts with that literal, plus those starting with a parameter or a tail, or empty.
/// Route order is kept, so ties resolve as without the index.
#[derive(Clone, Default)]
struct RouteIndex {
    by_first: std::collections::HashMap<Box<[u8]>, Vec<usize>>,
    any_first: Vec<usize>,
    /// Some resource wants verified client addresses ([`Resource::verified_address`]):
    /// without one, requests skip that lookup.
    any_verified_address: bool,
    /// Some resource wants fresh unsafe requests ([`Resource::require_fresh`]).
    any_fresh: bool,
}

impl RouteIndex {
    fn new(routes: &[Route]) -> RouteIndex {
        let mut index = RouteIndex {
            any_verified_address: routes.iter().any(|r| r.resource.verified_address),
            any_fresh: routes.iter().any(|r| r.resource.freshness.is_some()),
            ..RouteIndex::default()
        };
        for (i, route) in routes.iter().enumerate() {
            match route.segments.first() {
                Some(Segment::Literal(lit)) => {
                    index.by_first.entry(lit.clone()).or_default().push(i)
                }
                _ => index.any_first.push(i),
            }
        }
        // Every literal bucket also holds the routes that match any first segment, in
        // route order.
        for bucket in index.by_first.values_mut() {
            bucket.extend(&index.any_first);
            bucket.sort_unstable();
        }
        index
    }

    fn candidates(&self, first: Option<&[u8]>) -> &[usize] {
        first
            .and_then(|f| self.by_first.get(f))
            .map_or(&self.any_first, Vec::as_slice)
    }
}

impl Default for Router {
    fn default() -> Self {
        Router::new()
    }
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.routes.iter().map(|r| (&r.pattern, &r.resource)))
            .finish()
    }
}

/// Parses a pattern into segments. Panics on a malformed pattern: routes are written by
/// the programmer, and a bad one is a bug best found at start-up.
fn parse_pattern(path: &str) -> Vec<Segment> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return Vec::new();
    }
    let parts: Vec<&str> = trimmed.split('/').collect();
    let last = parts.len() - 1;
    parts
        .iter()
        .enumerate()
        .map(
            |(i, part)| match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) => match name.strip_prefix('*') {
                    Some(tail) => {
                        assert!(
                            i == last,
                            "route {path:?}: a tail parameter {{*{tail}}} must come last"
                        );
                        Segment::Tail(tail.into())
                    }
                    None => Segment::Param(name.into()),
                },
                None => Segment::Literal(part.as_bytes().into()),
            },
        )
        .collect()
}

impl Router {
    /// A router without routes (everything but `/.well-known/core` gets 4.04).
    pub fn new() -> Router {
        Router {
            routes: Vec::new(),
            well_known: OnceLock::new(),
            index: OnceLock::new(),
        }
    }

    /// Adds `resource` at the path pattern `path`: `"/test"`, `"/seg1/seg2/seg3"`,
    /// `"/things/{id}"`, `"/files/{*rest}"`. A second route with the same pattern
    /// replaces the first.
    ///
    /// # Panics
    /// If a tail parameter `{*name}` is not the last segment.
    pub fn route(mut self, path: &str, resource: Resource) -> Router {
        let route = Route {
            pattern: path.to_owned(),
            segments: parse_pattern(path),
            resource,
        };
        match self.routes.iter_mut().find(|r| r.pattern == route.pattern) {
            Some(existing) => *existing = route,
            None => self.routes.push(route),
        }
        self.well_known = OnceLock::new();
        self.index = OnceLock::new();
        self
    }

    /// Makes the resource at path pattern `pattern` (as given to [`route`](Self::route);
    /// `*` for every route) run unsafe requests only when they are fresh, as
    /// [`Resource::require_fresh`] does (RFC 9175 §2.4 item 1). A pattern without a route
    /// changes nothing ([`has_route`](Self::has_route) tells).
    pub fn require_fresh(mut self, pattern: &str, max_age: std::time::Duration) -> Router {
        for route in &mut self.routes {
            if pattern == "*" || route.pattern == pattern {
                route.resource.freshness = Some(max_age);
            }
        }
        self.index = OnceLock::new();
        self
    }

    /// Whether a route was added with exactly this path pattern.
    pub fn has_route(&self, pattern: &str) -> bool {
        self.routes.iter().any(|r| r.pattern == pattern)
    }

    /// The routes that can match `request`'s path, in route order.
    fn candidates<'a>(&'a self, request: &Request) -> impl Iterator<Item = &'a Route> + 'a {
        self.index()
            .candidates(request.path_segments().next())
            .iter()
            .map(move |&i| &self.routes[i])
    }

    /// The route index, built on first use.
    fn index(&self) -> &RouteIndex {
        self.index.get_or_init(|| RouteIndex::new(&self.routes))
    }

    /// The `/.well-known/core` document: listed resources are those not hidden, whose
    /// patterns have no parameters and which have at least one handler.
    fn render_well_known(&self) -> WellKnown {
        let entries: Vec<(String, &Resource)> = self
            .routes
            .iter()
            .filter(|r| !r.resource.hidden && !r.resource.handlers.is_empty())
            .filter_map(|r| Some((r.href()?, &r.resource)))
            .collect();
        WellKnown::new(entries.iter().map(|(h, r)| (h.as_str(), &r.attrs)))
    }

    fn well_known(&self) -> &WellKnown {
        self.well_known.get_or_init(|| self.render_well_known())
    }

    /// The `/.well-known/core` payload for an unfiltered GET.
    pub fn link_format(&self) -> String {
        let mut request = Request::new(Code::GET);
        request.set_path("/.well-known/core");
        let response = self.well_known().respond(&request, false);
        String::from_utf8_lossy(&response.payload).into_owned()
    }

    /// Whether any resource takes uploads block by block (RFC 7959 §2.5).
    pub(crate) fn has_non_atomic_uploads(&self) -> bool {
        self.routes.iter().any(|r| r.resource.non_atomic)
    }

    /// Whether `request` goes to a resource that takes uploads block by block.
    pub(crate) fn takes_blocks(&self, request: &Request) -> bool {
        self.route_for(request)
            .is_some_and(|route| route.resource.non_atomic)
    }

    /// Whether `request` goes to a resource that wants a verified client address
    /// ([`Resource::verified_address`]).
    pub(crate) fn wants_verified_address(&self, request: &Request) -> bool {
        self.index().any_verified_address
            && self
                .route_for(request)
                .is_some_and(|route| route.resource.verified_address)
    }

    /// How fresh `request` must be, when it goes to a resource that wants fresh requests
    /// ([`Resource::require_fresh`], RFC 9175 §2.4 item 1).
    pub(crate) fn freshness_for(&self, request: &Request) -> Option<std::time::Duration> {
        if !self.index().any_fresh {
            return None;
        }
        self.route_for(request)
            .and_then(|route| route.resource.freshness)
    }

    /// The most specific route with a handler for `request`.
    fn route_for(&self, request: &Request) -> Option<&Route> {
        self.candidates(request)
            .filter(|route| route.matches(request.path_segments(), None))
            .filter(|route| route.resource.handler(request.method).is_some())
            .reduce(|best, route| {
                if route.specificity(best) == Ordering::Greater {
                    route
                } else {
                    best
                }
            })
    }

    /// Decides what to do with a request.
    pub(crate) fn resolve(&self, request: &Request, multicast: bool) -> Resolution {
        let method = request.method;
        let mut best: Option<&Route> = None;
        let mut path_matched = false;
        for route in self.candidates(request) {
            if !route.matches(request.path_segments(), None) {
                continue;
            }
            path_matched = true;
            if route.resource.handler(method).is_none() {
                continue;
            }
            if best.is_none_or(|b| route.specificity(b) == Ordering::Greater) {
                best = Some(route);
            }
        }
        if let Some(route) = best {
            let mut params = Vec::new();
            if route
                .segments
                .iter()
                .any(|s| !matches!(s, Segment::Literal(_)))
            {
                route.matches(request.path_segments(), Some(&mut params));
            }
            if let Some(handler) = route.resource.handler(method) {
                return Resolution::Handler(
                    handler.clone(),
                    params,
                    route.resource.observable.clone(),
                );
            }
        }
        if path_matched {
            return Resolution::Respond(Response::new(Code::METHOD_NOT_ALLOWED));
        }
        if request.path_segments().eq(WELL_KNOWN_CORE.iter().copied()) {
            return Resolution::Respond(if method == Code::GET {
                self.well_known().respond(request, multicast)
            } else {
                Response::new(Code::METHOD_NOT_ALLOWED)
            });
        }
        Resolution::Respond(Response::new(Code::NOT_FOUND))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RequestContext;

    fn echo(tag: &'static str) -> impl crate::Handler {
        move |_ctx: RequestContext| async move { Response::with_payload(Code::CONTENT, tag) }
    }

    fn request(method: Code, segments: &[&str]) -> Request {
        let mut r = Request::new(method);
        for s in segments {
            r.options.push(
                corium_proto::wire::OptionNumber::URI_PATH,
                s.as_bytes().to_vec(),
            );
        }
        r
    }

    fn outcome(router: &Router, method: Code, segments: &[&str]) -> Result<Params, Code> {
        match router.resolve(&request(method, segments), false) {
            Resolution::Handler(_, params, _) => Ok(params),
            Resolution::Respond(r) => Err(r.code),
        }
    }

    fn params(list: &[(&str, &str)]) -> Params {
        list.iter()
            .map(|(n, v)| (Arc::from(*n), v.to_string()))
            .collect()
    }

    #[test]
    fn literal_param_tail() {
        let router = Router::new()
            .route("/", Resource::new().get(echo("root")))
            .route("/test", Resource::new().get(echo("test")))
            .route("/things/{id}", Resource::new().get(echo("thing")))
            .route("/things/special", Resource::new().get(echo("special")))
            .route("/files/{*rest}", Resource::new().get(echo("files")))
            .route("/a/", Resource::new().get(echo("a-slash")));
        assert_eq!(outcome(&router, Code::GET, &[]), Ok(vec![]));
        assert_eq!(outcome(&router, Code::GET, &["test"]), Ok(vec![]));
        assert_eq!(
            outcome(&router, Code::GET, &["things", "42"]),
            Ok(params(&[("id", "42")]))
        );
        // The literal beats the parameter.
        assert_eq!(
            outcome(&router, Code::GET, &["things", "special"]),
            Ok(vec![])
        );
        assert_eq!(
            outcome(&router, Code::GET, &["files", "x", "y.txt"]),
            Ok(params(&[("rest", "x/y.txt")]))
        );
        assert_eq!(
            outcome(&router, Code::GET, &["files"]),
            Ok(params(&[("rest", "")]))
        );
        assert_eq!(outcome(&router, Code::GET, &["a", ""]), Ok(vec![]));
        assert_eq!(outcome(&router, Code::GET, &["a"]), Err(Code::NOT_FOUND));
        assert_eq!(
            outcome(&router, Code::GET, &["test", "x"]),
            Err(Code::NOT_FOUND)
        );
        assert_eq!(
            outcome(&router, Code::GET, &["things"]),
            Err(Code::NOT_FOUND)
        );
        assert_eq!(
            outcome(&router, Code::POST, &["test"]),
            Err(Code::METHOD_NOT_ALLOWED)
        );
    }

    #[test]
    fn method_falls_back_to_a_less_specific_route() {
        let router = Router::new()
            .route("/things/{id}", Resource::new().post(echo("post")))
            .route("/things/special", Resource::new().get(echo("get")));
        assert_eq!(
            outcome(&router, Code::POST, &["things", "special"]),
            Ok(params(&[("id", "special")]))
        );
        assert_eq!(
            outcome(&router, Code::DELETE, &["things", "special"]),
            Err(Code::METHOD_NOT_ALLOWED)
        );
    }

    #[test]
    fn well_known_core_is_served() {
        let router = Router::new()
            .route("/test", Resource::new().get(echo("test")).rt("x"))
            .route("/hidden", Resource::new().get(echo("h")).hidden())
            .route("/things/{id}", Resource::new().get(echo("thing")))
            .route("/a b", Resource::new().get(echo("space")));
        assert_eq!(router.link_format(), "</test>;rt=\"x\",</a%20b>");
        assert!(outcome(&router, Code::GET, &[".well-known", "core"])
            .is_err_and(|c| c == Code::CONTENT));
        assert_eq!(
            outcome(&router, Code::POST, &[".well-known", "core"]),
            Err(Code::METHOD_NOT_ALLOWED)
        );
        // A route of its own overrides the built-in one.
        let router = router.route("/.well-known/core", Resource::new().get(echo("mine")));
        assert!(outcome(&router, Code::GET, &[".well-known", "core"]).is_ok());
    }

    #[test]
    #[should_panic(expected = "must come last")]
    fn tail_must_be_last() {
        let _ = Router::new().route("/a/{*rest}/b", Resource::new());
    }
}
