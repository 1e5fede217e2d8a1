//! `corium observe URI`: registers as an observer (RFC 7641 §3.1) and prints
//! every notification: the payload rendered on stdout, one line per
//! notification on stderr with the time it arrived (RFC 3339, UTC), the code
//! and the Observe sequence number, e.g.
//! `2026-11-24T00:31:02.123Z 2.05 Content, Observe: 17`.
//!
//! It stops after `--count` notifications (the first response counts), after
//! `--duration` seconds, when the server ends the observation (a response
//! without Observe, or an error), or on Ctrl-C. Unless the server ended it, it
//! then deregisters actively with a GET carrying Observe = 1 and the same token
//! (§3.6), waiting for the answer at most 2 s (a second Ctrl-C stops waiting).

use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use corium::{Client, Observation, OptionNumber, Response};

use crate::format::{hex_dump, render_payload, Rendered};
use crate::{
    one_line, Failure, EXIT_ERROR_RESPONSE, EXIT_FAILURE, EXIT_NO_RESPONSE, EXIT_OK, EXIT_USAGE,
};

/// How long `corium observe` waits for the answer to its deregistration.
const CANCEL_WAIT: Duration = Duration::from_secs(2);

/// Arguments of `corium observe`.
#[derive(Debug, Args)]
pub(crate) struct ObserveArgs {
    /// The resource, e.g. `coap://127.0.0.1/obs`.
    #[arg(value_name = "URI")]
    pub(crate) uri: String,
    /// Stop after this many responses (the first response counts).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS", value_parser = crate::parse_seconds)]
    pub(crate) duration: Option<Duration>,
    /// Accept option: a content format name or number.
    #[arg(short = 'A', long = "accept", value_name = "FORMAT")]
    pub(crate) accept: Option<String>,
    /// Give up waiting for the first response after this many seconds.
    #[arg(long, value_name = "SECS", value_parser = crate::parse_seconds)]
    pub(crate) timeout: Option<Duration>,
    /// Print every message exchanged (a one-line dissection on stderr).
    #[arg(short = 'v', long = "verbose")]
    pub(crate) verbose: bool,
    /// TLS for coaps+tcp:// and coaps+ws://.
    #[command(flatten)]
    pub(crate) tls: crate::tls::TlsArgs,
    /// DTLS (PSK) for coaps://.
    #[command(flatten)]
    pub(crate) dtls: crate::dtls::DtlsArgs,
    /// OSCORE credentials (TOML): the registration and every notification are
    /// protected when the URI matches a context's `uri` pattern (RFC 8613).
    #[arg(long = "credentials", value_name = "FILE")]
    pub(crate) credentials: Option<std::path::PathBuf>,
}

/// Runs `corium observe`; returns the exit code.
pub(crate) fn run(args: ObserveArgs) -> Result<u8, Failure> {
    let target = crate::uri::parse(&args.uri).map_err(Failure::usage)?;
    let accept = args
        .accept
        .as_deref()
        .map(crate::client::parse_content_format)
        .transpose()?;
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::other(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let mut builder = Client::builder();
        if let Some(tls) = tls {
            builder = builder.tls(tls);
        }
        if let Some(dtls) = dtls {
            builder = builder.dtls(dtls);
        }
        if let Some(c) = &credentials {
            let mut oscore = c.client(&args.uri)?;
            if crate::edhoc::entry_for(c.edhoc(), &args.uri).is_some() {
                // RFC 9528 Appendix A.2: EDHOC first, over a plain client.
                let plain = crate::client::bind_for(
                    Client::builder(),
                    &target.host,
                    target.port,
                    args.verbose,
                )
                .await?;
                oscore = crate::edhoc::client(c.edhoc(), &plain, &args.uri, oscore).await?;
            }
            builder = builder.oscore(oscore);
        }
        let client =
            crate::client::bind_for(builder, &target.host, target.port, args.verbose).await?;
        let mut req = client.request(corium::Code::GET, &args.uri);
        if let Some(cf) = accept {
            req = req.accept(cf);
        }
        if let Some(t) = args.timeout {
            req = req.timeout(t);
        }
        let observation = req.observe().await.map_err(|e| Failure {
            exit_code: if e.is_uri() {
                EXIT_USAGE
            } else if e.is_timeout() || e.is_reset() {
                EXIT_NO_RESPONSE
            } else {
                EXIT_FAILURE
            },
            message: e.to_string(),
        })?;
        let stop = async {
            match args.duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        let mut observation = observation;
        // `biased`: the Ctrl-C handler is installed before the first line is printed.
        let (exit, active) = tokio::select! {
            biased;
            _ = tokio::signal::ctrl_c() => (EXIT_OK, true),
            () = stop => (EXIT_OK, true),
            result = print_notifications(&mut observation, args.count) => result?,
        };
        if active {
            // RFC 7641 §3.6: deregister explicitly rather than wait for a RST.
            tokio::select! {
                _ = tokio::time::timeout(CANCEL_WAIT, observation.cancel()) => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Ok(exit)
    })
}

/// Prints notifications until `count` is reached (returns the exit code and `true`:
/// the relation still stands) or the observation ends (`false`).
async fn print_notifications(
    o: &mut Observation,
    count: Option<u64>,
) -> Result<(u8, bool), Failure> {
    let mut seen = 0u64;
    let mut exit = EXIT_OK;
    while let Some(result) = o.next().await {
        let response = result.map_err(|e| Failure {
            exit_code: if e.is_timeout() || e.is_reset() {
                EXIT_NO_RESPONSE
            } else {
                EXIT_FAILURE
            },
            message: e.to_string(),
        })?;
        print_one(&response)?;
        if response.code.class() != 2 {
            exit = EXIT_ERROR_RESPONSE;
        }
        seen += 1;
        if count.is_some_and(|n| seen >= n) {
            return Ok((exit, true));
        }
    }
    Ok((exit, false))
}

/// `time` as RFC 3339 in UTC with milliseconds, e.g. `2026-11-24T00:31:02.123Z`.
fn rfc3339_utc(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian (year, month, day) of `days` days after 1970-01-01
/// (H. Hinnant's `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// One notification: `2026-11-24T00:31:02.123Z 2.05 Content, Observe: 12` on stderr,
/// the payload on stdout.
fn print_one(r: &Response) -> Result<(), Failure> {
    let mut line = format!("{} {:?}", rfc3339_utc(SystemTime::now()), r.code);
    match r.options.get_uint(OptionNumber::OBSERVE) {
        Some(seq) => line.push_str(&format!(", Observe: {seq}")),
        None => line.push_str(", not observing"),
    }
    eprintln!("{line}");
    let text = match render_payload(&r.payload, r.content_format().map(|c| c.0)) {
        Rendered::Text(mut s) => {
            if r.code.class() != 2 {
                s = one_line(&s);
            }
            if !s.is_empty() && !s.ends_with('\n') {
                s.push('\n');
            }
            s
        }
        Rendered::Binary => hex_dump(&r.payload),
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::other(format!("cannot write to stdout: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: u64) -> String {
        rfc3339_utc(UNIX_EPOCH + Duration::from_millis(millis))
    }

    #[test]
    fn timestamps() {
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(951_868_799_999), "2000-02-29T23:59:59.999Z");
        assert_eq!(at(1_795_480_262_123), "2026-11-24T00:31:02.123Z");
        assert_eq!(at(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
    }
}
