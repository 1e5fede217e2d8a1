//! Resources: the handlers of one path, by method, and the link attributes that
//! `/.well-known/core` advertises for it (RFC 6690).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use corium_proto::wire::Code;
use corium_proto::Response;

use crate::server::RequestContext;

/// The future a [`Handler`] returns, boxed so that handlers of different types can sit
/// in one router.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Response> + Send + 'static>>;

/// An async request handler.
///
/// Implemented for every `Fn(RequestContext) -> impl Future<Output = Response> + Send`
/// that is `Send + Sync + 'static`, so a closure or an `async fn` works:
///
/// ```
/// use corium::{Code, RequestContext, Resource, Response};
///
/// async fn hello(_ctx: RequestContext) -> Response {
///     Response::with_payload(Code::CONTENT, "hello")
/// }
/// let resource = Resource::new()
///     .get(hello)
///     .put(|ctx: RequestContext| async move { Response::with_payload(Code::CHANGED, ctx.request.payload) });
/// ```
///
/// A handler that panics is answered 5.00 Internal Server Error; the server keeps
/// serving.
pub trait Handler: Send + Sync + 'static {
    /// Starts handling one request.
    fn call(&self, ctx: RequestContext) -> HandlerFuture;

    /// Answers at once, without a future, when the handler can: the runtime tries this
    /// first and calls [`call`](Self::call) with the context handed back otherwise.
    /// The default hands it back; the synchronous handlers of [`Resource::get_sync`]
    /// and [`Resource::method_sync`] answer, so a request to them allocates no future
    /// (issue 8: nothing allocated per request on the plain GET path but the
    /// response's own payload).
    #[allow(clippy::result_large_err)]
    fn call_now(&self, ctx: RequestContext) -> Result<Response, RequestContext> {
        Err(ctx)
    }
}

/// A synchronous handler ([`Resource::method_sync`]).
struct SyncHandler<F>(F);

impl<F> Handler for SyncHandler<F>
where
    F: Fn(RequestContext) -> Response + Send + Sync + 'static,
{
    fn call(&self, ctx: RequestContext) -> HandlerFuture {
        Box::pin(std::future::ready((self.0)(ctx)))
    }

    fn call_now(&self, ctx: RequestContext) -> Result<Response, RequestContext> {
        Ok((self.0)(ctx))
    }
}

impl<F, Fut> Handler for F
where
    F: Fn(RequestContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    fn call(&self, ctx: RequestContext) -> HandlerFuture {
        Box::pin(self(ctx))
    }
}

/// The answer to a non-atomic upload's block that is not the last (RFC 7959 §2.3):
/// 2.31 Continue, echoing the block's Block1 option.
pub fn continue_block1(block: corium_proto::wire::BlockValue) -> Response {
    let mut response = Response::new(Code::CONTINUE);
    let mut buf = [0u8; 4];
    response.options.push(
        corium_proto::wire::OptionNumber::BLOCK1,
        block.encode(&mut buf).to_vec(),
    );
    response
}

/// Link attributes of a resource, served in `/.well-known/core` (RFC 6690 §3, RFC 7252
/// §7.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceAttrs {
    /// Resource types, `rt` (RFC 6690 §3.1): written as one quoted, space-separated
    /// string.
    pub rt: Vec<String>,
    /// Interface descriptions, `if` (RFC 6690 §3.2): one quoted, space-separated string.
    pub if_: Vec<String>,
    /// Content-Format codes, `ct` (RFC 7252 §7.2.1): a bare number, or a quoted
    /// space-separated list when there are several.
    pub ct: Vec<u16>,
    /// Maximum size estimate in bytes, `sz` (RFC 6690 §3.3).
    pub sz: Option<u64>,
    /// Human-readable title, `title` (RFC 8288 §3.4.1), quoted.
    pub title: Option<String>,
    /// Observable, `obs` (RFC 7641 §6): a flag without value.
    pub obs: bool,
    /// Other link-extension attributes: a name with a quoted value, or a bare flag.
    pub other: Vec<(String, Option<String>)>,
}

/// The handlers for one path, by method, and its link attributes.
///
/// ```
/// use corium::{Code, RequestContext, Resource, Response};
///
/// let temp = Resource::new()
///     .get(|_ctx: RequestContext| async { Response::with_payload(Code::CONTENT, "21.5") })
///     .rt("temperature-c")
///     .if_("sensor")
///     .ct(0)
///     .obs();
/// ```
#[derive(Clone, Default)]
pub struct Resource {
    pub(crate) handlers: Vec<(Code, Arc<dyn Handler>)>,
    pub(crate) attrs: ResourceAttrs,
    pub(crate) hidden: bool,
    /// Set by [`observable`](Self::observable) (RFC 7641).
    pub(crate) observable: Option<crate::Observable>,
    /// Set by [`non_atomic_upload`](Self::non_atomic_upload) (RFC 7959 §2.5).
    pub(crate) non_atomic: bool,
    /// Set by [`verified_address`](Self::verified_address) (RFC 9175 §2.4 item 3).
    pub(crate) verified_address: bool,
    /// Set by [`require_fresh`](Self::require_fresh) (RFC 9175 §2.4 item 1).
    pub(crate) freshness: Option<std::time::Duration>,
}

impl fmt::Debug for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let methods: Vec<String> = self.handlers.iter().map(|(c, _)| c.to_string()).collect();
        f.debug_struct("Resource")
            .field("methods", &methods)
            .field("attrs", &self.attrs)
            .field("hidden", &self.hidden)
            .finish()
    }
}

impl Resource {
    /// A resource without handlers (every method gets 4.05) or attributes.
    pub fn new() -> Resource {
        Resource::default()
    }

    /// Takes Block1 uploads block by block (RFC 7959 §2.5, non-atomic): each block
    /// reaches the handler as a request with its Block1 option
    /// ([`RequestContext::block1`]) and the handler answers it, with 2.31 Continue and
    /// the Block1 option ([`continue_block1`]) until the last block. Without this, an
    /// upload is reassembled first and the handler sees one request with the whole body
    /// (atomic).
    pub fn non_atomic_upload(mut self) -> Self {
        self.non_atomic = true;
        self
    }

    /// Runs the handlers only for clients whose address is verified (RFC 9175 §2.4
    /// item 3): a request over plain UDP from an address that has not echoed an Echo
    /// value yet is answered 4.01 with one, and its repetition with the value reaches
    /// the handler. For resources whose work goes to the requester's address, such as
    /// a Resource Directory's simple registration, which fetches the registrant's
    /// `/.well-known/core` (RFC 9176 §5.1). Needs the server's amplification limit
    /// (on by default, [`ServerBuilder::amplification_limit`](
    /// crate::ServerBuilder::amplification_limit)), which keeps the verified addresses;
    /// without it, or over DTLS and the RFC 8323 transports, requests pass as they are.
    pub fn verified_address(mut self) -> Self {
        self.verified_address = true;
        self
    }

    /// Runs unsafe requests (POST, PUT, DELETE, PATCH, iPATCH) only when they are fresh
    /// (RFC 9175 §2.4 item 1, for actuators): a request without an Echo value this
    /// server made for the client at most `max_age` ago is not handed to the handler but
    /// answered 4.01 Unauthorized with a new Echo value (§2.3), and its repetition with
    /// that value runs. Under OSCORE the Echo option is inside the protection (class E,
    /// RFC 8613 §4.1) and so is the 4.01. Safe methods (GET, FETCH) are not affected.
    /// The values are stateless (a timestamp with a MAC over it and the client's
    /// address), with a resolution of one second; a value stays usable for several
    /// requests while it is young enough (§2.4 item 1). Multicast requests are not run
    /// either: the 4.01 to them is suppressed (RFC 7252 §8.2). An atomic Block1 upload
    /// is checked once reassembled, so the 4.01 answers its last block, and the Echo
    /// value has to come with that block.
    pub fn require_fresh(mut self, max_age: std::time::Duration) -> Self {
        self.freshness = Some(max_age);
        self
    }

    /// Handles `method` with `h`, replacing an earlier handler for the same method.
    pub fn method<H: Handler>(mut self, method: Code, h: H) -> Self {
        let h: Arc<dyn Handler> = Arc::new(h);
        match self.handlers.iter_mut().find(|(m, _)| *m == method) {
            Some(slot) => slot.1 = h,
            None => self.handlers.push((method, h)),
        }
        self
    }

    /// Handles GET (RFC 7252 §5.8.1).
    pub fn get<H: Handler>(self, h: H) -> Self {
        self.method(Code::GET, h)
    }

    /// Handles `method` with a synchronous function, replacing an earlier handler for
    /// the same method. It runs on the socket's driver task and must not block; its
    /// answer is sent at once (piggybacked for a CON, RFC 7252 §5.2.1) and no future
    /// is allocated for it (see [`Handler::call_now`]). Observe notifications
    /// (RFC 7641) call it as they call an async handler.
    ///
    /// ```
    /// use corium::{Code, RequestContext, Resource, Response};
    ///
    /// let test = Resource::new()
    ///     .get_sync(|_ctx: RequestContext| Response::with_payload(Code::CONTENT, "hello"));
    /// ```
    pub fn method_sync<F>(self, method: Code, f: F) -> Self
    where
        F: Fn(RequestContext) -> Response + Send + Sync + 'static,
    {
        self.method(method, SyncHandler(f))
    }

    /// Handles GET (RFC 7252 §5.8.1) with a synchronous function
    /// ([`method_sync`](Self::method_sync)).
    pub fn get_sync<F>(self, f: F) -> Self
    where
        F: Fn(RequestContext) -> Response + Send + Sync + 'static,
    {
        self.method_sync(Code::GET, f)
    }

    /// Handles POST (RFC 7252 §5.8.2).
    pub fn post<H: Handler>(self, h: H) -> Self {
        self.method(Code::POST, h)
    }

    /// Handles PUT (RFC 7252 §5.8.3).
    pub fn put<H: Handler>(self, h: H) -> Self {
        self.method(Code::PUT, h)
    }

    /// Handles DELETE (RFC 7252 §5.8.4).
    pub fn delete<H: Handler>(self, h: H) -> Self {
        self.method(Code::DELETE, h)
    }

    /// Handles FETCH (RFC 8132 §2).
    pub fn fetch<H: Handler>(self, h: H) -> Self {
        self.method(Code::FETCH, h)
    }

    /// Handles PATCH (RFC 8132 §3).
    pub fn patch<H: Handler>(self, h: H) -> Self {
        self.method(Code::PATCH, h)
    }

    /// Handles iPATCH (RFC 8132 §3).
    pub fn ipatch<H: Handler>(self, h: H) -> Self {
        self.method(Code::IPATCH, h)
    }

    /// Adds a resource type, `rt` (RFC 6690 §3.1).
    pub fn rt(mut self, v: &str) -> Self {
        self.attrs.rt.push(v.to_owned());
        self
    }

    /// Adds an interface description, `if` (RFC 6690 §3.2).
    pub fn if_(mut self, v: &str) -> Self {
        self.attrs.if_.push(v.to_owned());
        self
    }

    /// Adds a Content-Format code, `ct` (RFC 7252 §7.2.1).
    pub fn ct(mut self, cf: u16) -> Self {
        self.attrs.ct.push(cf);
        self
    }

    /// Sets the maximum size estimate, `sz` (RFC 6690 §3.3).
    pub fn sz(mut self, n: u64) -> Self {
        self.attrs.sz = Some(n);
        self
    }

    /// Sets the title.
    pub fn title(mut self, t: &str) -> Self {
        self.attrs.title = Some(t.to_owned());
        self
    }

    /// Marks the resource observable, `obs` (RFC 7641 §6).
    pub fn obs(mut self) -> Self {
        self.attrs.obs = true;
        self
    }

    /// Makes the resource observable (RFC 7641): a GET with Observe = 0 registers the
    /// client, and each [`Observable::notify`](crate::Observable::notify) sends it the GET
    /// handler's new response. Also sets `obs` in `/.well-known/core` (§6).
    pub fn observable(mut self, notifier: &crate::Observable) -> Self {
        self.observable = Some(notifier.clone());
        self.attrs.obs = true;
        self
    }

    /// Adds another link attribute: `name="value"`, or a bare `name` for `None`.
    pub fn attr(mut self, name: &str, value: Option<&str>) -> Self {
        self.attrs
            .other
            .push((name.to_owned(), value.map(str::to_owned)));
        self
    }

    /// Replaces every link attribute.
    pub fn attrs(mut self, attrs: ResourceAttrs) -> Self {
        self.attrs = attrs;
        self
    }

    /// Leaves the resource out of `/.well-known/core`.
    pub fn hidden(mut self) -> Self {
        self.hidden = true;
        self
    }

    /// The link attributes.
    pub fn link_attrs(&self) -> &ResourceAttrs {
        &self.attrs
    }

    /// The methods that have a handler, in the order they were added.
    pub fn methods(&self) -> impl Iterator<Item = Code> + '_ {
        self.handlers.iter().map(|(c, _)| *c)
    }

    pub(crate) fn handler(&self, method: Code) -> Option<&Arc<dyn Handler>> {
        self.handlers
            .iter()
            .find(|(m, _)| *m == method)
            .map(|(_, h)| h)
    }
}
