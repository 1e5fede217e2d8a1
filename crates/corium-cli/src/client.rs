//! The request verbs (`get`, `post`, `put`, `delete`, `fetch`, `patch`,
//! `ipatch`) and `discover`.
//!
//! Arguments are checked first ([`prepare_request`], [`prepare_discover`]),
//! so a bad URI or an unknown content format fails before any socket is
//! opened; then one request goes out through a [`corium::Client`].

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use corium::{Client, Code, ContentFormat, Direction, OptionNumber, Response};

use crate::format::{
    hex_dump, link_table, parse_hex_or_text_option_value, render_payload, Rendered,
};
use crate::{
    one_line, DiscoverArgs, Failure, RequestArgs, EXIT_ERROR_RESPONSE, EXIT_FAILURE,
    EXIT_NO_RESPONSE, EXIT_OK, EXIT_USAGE,
};

/// A request whose arguments have all been checked.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The method.
    method: Code,
    /// The URI as given (checked by [`crate::uri::parse`]).
    uri: String,
    /// Host and port, for choosing the local socket's address family.
    host: String,
    /// The destination port.
    port: u16,
    /// The payload (empty when none was given).
    payload: Vec<u8>,
    /// Content-Format of the payload.
    content_format: Option<ContentFormat>,
    /// Accept option.
    accept: Option<ContentFormat>,
    /// Extra options in command-line order.
    options: Vec<(u16, Vec<u8>)>,
    /// Non-confirmable.
    non: bool,
    /// Response timeout.
    timeout: Option<Duration>,
    /// Print every message exchanged.
    verbose: bool,
    /// Block size exponent for block-wise transfers (`-b`), when given.
    block_szx: Option<u8>,
    /// Write the payload here instead of stdout.
    output: Option<PathBuf>,
    /// TLS settings for the secure schemes.
    tls: Option<corium::tls::TlsClient>,
    /// DTLS credentials for `coaps://` (RFC 7252 §9).
    dtls: Option<corium::corium_dtls::ClientConfig>,
    /// Max-Message-Size announced on connections (RFC 8323 §5.3.1).
    max_message_size: Option<u32>,
    /// OSCORE credentials (RFC 8613), checked before any socket is opened.
    credentials: Option<crate::credentials::Credentials>,
    /// `discover --wait`: a group request collecting answers this long.
    multicast_wait: Option<Duration>,
    /// `discover --multicast-if`.
    multicast_if: Option<std::net::Ipv4Addr>,
}

/// Looks up a content format by name or number (`text/plain`, `json`, `60`).
pub(crate) fn parse_content_format(name: &str) -> Result<ContentFormat, Failure> {
    ContentFormat::from_name(name)
        .ok_or_else(|| Failure::usage(format!("unknown content format {name:?}")))
}

/// Reads the payload from `-e TEXT` or `-f FILE` (`-` for stdin).
fn read_payload(text: Option<String>, file: Option<PathBuf>) -> Result<Vec<u8>, Failure> {
    match (text, file) {
        (Some(t), _) => Ok(t.into_bytes()),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| Failure::other(format!("cannot read the payload from stdin: {e}")))?;
            Ok(buf)
        }
        (None, Some(path)) => std::fs::read(&path).map_err(|e| Failure {
            exit_code: EXIT_USAGE,
            message: format!("cannot read payload file {}: {e}", path.display()),
        }),
        (None, None) => Ok(Vec::new()),
    }
}

/// Checks the arguments of a request verb.
pub(crate) fn prepare_request(method: Code, args: RequestArgs) -> Result<Prepared, Failure> {
    let target = crate::uri::parse(&args.uri).map_err(Failure::usage)?;
    let content_format = args
        .content_format
        .as_deref()
        .map(parse_content_format)
        .transpose()?;
    let accept = args
        .accept
        .as_deref()
        .map(parse_content_format)
        .transpose()?;
    let options = args
        .options
        .iter()
        .map(|spec| parse_hex_or_text_option_value(spec).map_err(Failure::usage))
        .collect::<Result<Vec<_>, _>>()?;
    let payload = read_payload(args.payload, args.payload_file)?;
    let tls = args.tls.client()?;
    crate::tls::check_secure_scheme(&args.uri, target.scheme, tls.is_some())?;
    let dtls = match args.dtls.client()? {
        Some(psk) => Some(psk),
        None if target.scheme == corium::wire::Scheme::Coaps => {
            crate::dtls::client_certificate(&args.tls, &target.host)?
        }
        None => None,
    };
    crate::dtls::check_scheme(&args.uri, target.scheme, dtls.is_some())?;
    let credentials = args
        .credentials
        .as_deref()
        .map(crate::credentials::load)
        .transpose()?;
    Ok(Prepared {
        method,
        uri: args.uri,
        host: target.host,
        port: target.port,
        payload,
        content_format,
        accept,
        options,
        non: args.non,
        timeout: args.timeout,
        verbose: args.verbose,
        output: args.output,
        block_szx: args.block_szx,
        tls,
        dtls,
        max_message_size: args.max_message_size,
        credentials,
        multicast_wait: None,
        multicast_if: None,
    })
}

/// Checks the arguments of `discover` and builds the `/.well-known/core` URI.
pub(crate) fn prepare_discover(args: &DiscoverArgs) -> Result<Prepared, Failure> {
    let uri =
        crate::uri::discovery_uri(&args.uri, args.filter.as_deref()).map_err(Failure::usage)?;
    let target = crate::uri::parse(&uri).map_err(Failure::usage)?;
    Ok(Prepared {
        method: Code::GET,
        uri,
        host: target.host,
        port: target.port,
        payload: Vec::new(),
        content_format: None,
        accept: None,
        options: Vec::new(),
        non: args.non,
        timeout: args.timeout,
        verbose: args.verbose,
        output: None,
        block_szx: None,
        tls: None,
        dtls: None,
        max_message_size: None,
        credentials: None,
        multicast_wait: args.wait,
        multicast_if: args.multicast_if,
    })
}

/// Opens the client for a prepared request: progress bar on terminals, `-b`, `-v`.
async fn connect(p: &Prepared) -> Result<Client, Failure> {
    let mut builder = Client::builder();
    if let Some(tls) = &p.tls {
        builder = builder.tls(tls.clone());
    }
    if let Some(dtls) = &p.dtls {
        builder = builder.dtls(dtls.clone());
    }
    if let Some(c) = &p.credentials {
        let mut oscore = c.client(&p.uri)?;
        if crate::edhoc::entry_for(c.edhoc(), &p.uri).is_some() {
            // RFC 9528 Appendix A.2: EDHOC first, over a plain client.
            let plain = bind_for(Client::builder(), &p.host, p.port, p.verbose).await?;
            oscore = crate::edhoc::client(c.edhoc(), &plain, &p.uri, oscore).await?;
        }
        builder = builder.oscore(oscore);
    }
    if let Some(size) = p.max_message_size {
        builder = builder.stream_limits(corium::StreamLimits {
            max_message_size: size as usize,
            ..Default::default()
        });
    }
    if !p.verbose {
        if let Some(bar) = crate::progress::for_stderr() {
            builder = builder.progress(bar);
        }
    }
    if let Some(szx) = p.block_szx {
        builder = builder.config(corium::EndpointConfig {
            max_block_szx: szx,
            ..Default::default()
        });
    }
    bind_for(builder, &p.host, p.port, p.verbose).await
}

/// Resolves the destination and binds `builder` to a socket of the same address family
/// (`0.0.0.0:0` for IPv4 peers, `[::]:0` for IPv6); with `verbose`, every datagram is
/// dissected on stderr.
pub(crate) async fn bind_for(
    mut builder: corium::ClientBuilder,
    host: &str,
    port: u16,
    verbose: bool,
) -> Result<Client, Failure> {
    let first = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Failure::usage(format!("cannot resolve host {host:?}: {e}")))?
        .next()
        .ok_or_else(|| Failure::usage(format!("host {host:?} has no address")))?;
    let local: SocketAddr = if first.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    if verbose {
        builder = builder.trace_framed(|direction, peer, framing, bytes| {
            let sent = matches!(direction, Direction::Sent);
            eprintln!("{}", crate::trace::dissect(sent, peer, framing, bytes));
        });
    }
    builder
        .bind(local)
        .await
        .map_err(|e| Failure::other(format!("cannot open a UDP socket on {local}: {e}")))
}

/// Sends the prepared request and returns the response.
async fn send(p: &Prepared) -> Result<Response, Failure> {
    let client = connect(p).await?;
    let mut req = client.request(p.method, &p.uri).non_confirmable(p.non);
    if !p.payload.is_empty() {
        req = req.payload(p.payload.clone());
    }
    if let Some(cf) = p.content_format {
        req = req.content_format(cf);
    }
    if let Some(cf) = p.accept {
        req = req.accept(cf);
    }
    for (number, value) in &p.options {
        req = req.option(OptionNumber(*number), value.clone());
    }
    if let Some(t) = p.timeout {
        req = req.timeout(t);
    }
    req.send().await.map_err(|e| {
        let exit_code = if e.is_uri() {
            EXIT_USAGE
        } else if e.is_timeout() || e.is_reset() {
            EXIT_NO_RESPONSE
        } else {
            EXIT_FAILURE
        };
        Failure {
            exit_code,
            message: e.to_string(),
        }
    })
}

/// The exit code for a response: 0 for 2.xx, 1 for anything else.
fn exit_code_of(code: Code) -> u8 {
    if code.class() == 2 {
        EXIT_OK
    } else {
        EXIT_ERROR_RESPONSE
    }
}

/// `/a/b?x=1&y=2` from the Location-Path and Location-Query options
/// (RFC 7252 §5.10.7), or `None` when there are none.
fn location(resp: &Response) -> Option<String> {
    let path: Vec<String> = resp
        .options
        .get_all(OptionNumber::LOCATION_PATH)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    let query: Vec<String> = resp
        .options
        .get_all(OptionNumber::LOCATION_QUERY)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    if path.is_empty() && query.is_empty() {
        return None;
    }
    let mut out = format!("/{}", path.join("/"));
    if !query.is_empty() {
        out.push('?');
        out.push_str(&query.join("&"));
    }
    Some(out)
}

/// Writes to stdout; a closed pipe (`corium get ... | head`) is not an error.
fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::other(format!("cannot write to stdout: {e}"))),
    }
}

/// The diagnostic payload of an error response (RFC 7252 §5.5.2): UTF-8
/// text with no Content-Format or text/plain.
fn diagnostic(resp: &Response) -> Option<&str> {
    let textual = resp.content_format().is_none_or(|cf| cf.0 == 0);
    if resp.code.class() == 2 || resp.payload.is_empty() || !textual {
        return None;
    }
    std::str::from_utf8(&resp.payload).ok()
}

/// Prints the code line (with the diagnostic payload of an error response)
/// and the location, if any, on stderr.
fn report_code(resp: &Response) {
    let mut line = format!("{:?}", resp.code);
    if let Some(diag) = diagnostic(resp) {
        line.push_str(": ");
        line.push_str(&one_line(diag));
    }
    eprintln!("{line}");
    if let Some(loc) = location(resp) {
        eprintln!("Location: {loc}");
    }
}

/// Runs a request verb; returns the exit code.
pub(crate) async fn request(p: Prepared) -> Result<u8, Failure> {
    let resp = send(&p).await?;
    report_code(&resp);
    if diagnostic(&resp).is_some() {
        // Already shown on the code line.
    } else if let Some(path) = &p.output {
        std::fs::write(path, &resp.payload)
            .map_err(|e| Failure::other(format!("cannot write {}: {e}", path.display())))?;
    } else {
        let cf = resp.content_format().map(|c| c.0);
        match render_payload(&resp.payload, cf) {
            Rendered::Text(mut s) => {
                if !s.is_empty() && !s.ends_with('\n') {
                    s.push('\n');
                }
                write_stdout(s.as_bytes())?;
            }
            Rendered::Binary => write_stdout(hex_dump(&resp.payload).as_bytes())?,
        }
    }
    Ok(exit_code_of(resp.code))
}

/// Runs `discover`: prints the links as a table; returns the exit code.
pub(crate) async fn discover(p: Prepared) -> Result<u8, Failure> {
    if let Some(wait) = p.multicast_wait {
        return discover_group(p, wait).await;
    }
    let resp = send(&p).await?;
    report_code(&resp);
    if resp.code.class() != 2 {
        return Ok(EXIT_ERROR_RESPONSE);
    }
    let doc = std::str::from_utf8(&resp.payload).map_err(|_| Failure {
        exit_code: EXIT_FAILURE,
        message: "the response is not a link-format document (not UTF-8)".to_owned(),
    })?;
    write_stdout(link_table(doc).as_bytes())?;
    Ok(EXIT_OK)
}

/// `discover --wait`: one request to a group (RFC 7252 §8.1), every answer listed
/// under the server that sent it; exit 3 when nobody answered.
async fn discover_group(p: Prepared, wait: Duration) -> Result<u8, Failure> {
    let mut builder = Client::builder();
    if let Some(interface) = p.multicast_if {
        builder = builder.multicast_interface(interface);
    }
    let client = bind_for(builder, &p.host, p.port, p.verbose).await?;
    let answers = client
        .request(Code::GET, &p.uri)
        .multicast(wait)
        .await
        .map_err(|e| Failure {
            exit_code: if e.is_uri() { EXIT_USAGE } else { EXIT_FAILURE },
            message: one_line(&e.to_string()),
        })?;
    if answers.is_empty() {
        eprintln!("no answer within {:.1} s", wait.as_secs_f64());
        return Ok(EXIT_NO_RESPONSE);
    }
    let mut out = String::new();
    for (peer, response) in &answers {
        out.push_str(&format!("# {peer}: {:?}\n", response.code));
        if let Ok(doc) = std::str::from_utf8(&response.payload) {
            out.push_str(&link_table(doc));
        }
    }
    write_stdout(out.as_bytes())?;
    eprintln!("{} server(s) answered", answers.len());
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_format_names_and_numbers() {
        assert_eq!(
            parse_content_format("text/plain").unwrap(),
            ContentFormat(0)
        );
        assert_eq!(
            parse_content_format("application/json").unwrap(),
            ContentFormat(50)
        );
        assert_eq!(
            parse_content_format("application/cbor").unwrap(),
            ContentFormat(60)
        );
        assert_eq!(
            parse_content_format("application/link-format").unwrap(),
            ContentFormat(40)
        );
        assert_eq!(
            parse_content_format("application/senml+json").unwrap(),
            ContentFormat(110)
        );
        assert_eq!(parse_content_format("11542").unwrap(), ContentFormat(11542));
        let err = parse_content_format("foo").unwrap_err();
        assert_eq!(err.message, r#"unknown content format "foo""#);
        assert_eq!(err.exit_code, EXIT_USAGE);
    }

    #[test]
    fn location_options() {
        let mut r = Response::new(Code::CREATED);
        assert_eq!(location(&r), None);
        for seg in ["location1", "location2", "location3"] {
            r.options
                .push(OptionNumber::LOCATION_PATH, seg.as_bytes().to_vec());
        }
        assert_eq!(location(&r).unwrap(), "/location1/location2/location3");
        let mut r = Response::new(Code::CREATED);
        r.options
            .push(OptionNumber::LOCATION_QUERY, b"first=1".to_vec());
        r.options
            .push(OptionNumber::LOCATION_QUERY, b"second=2".to_vec());
        assert_eq!(location(&r).unwrap(), "/?first=1&second=2");
    }

    #[test]
    fn exit_codes_by_class() {
        assert_eq!(exit_code_of(Code::CONTENT), EXIT_OK);
        assert_eq!(exit_code_of(Code::CREATED), EXIT_OK);
        assert_eq!(exit_code_of(Code::NOT_FOUND), EXIT_ERROR_RESPONSE);
        assert_eq!(exit_code_of(Code::PRECONDITION_FAILED), EXIT_ERROR_RESPONSE);
        assert_eq!(
            exit_code_of(Code::INTERNAL_SERVER_ERROR),
            EXIT_ERROR_RESPONSE
        );
    }
}
