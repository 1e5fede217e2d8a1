//! Multicast discovery across real network interfaces (RFC 7252 §8, RFC 7390): three
//! `corium serve` instances, each in its own network namespace, joined to the
//! All-CoAP-Nodes groups (224.0.1.187 and ff02::fd) on an Ethernet-like interface (a veth
//! pair into a bridge in a fourth "hub" namespace), and `corium discover --wait` from a
//! fifth namespace on the same bridge. Unlike `tests/multicast.rs` (loopback), the
//! requests and answers cross interfaces, IGMP/MLD joins and a bridge.
//!
//! Needs root (or CAP_NET_ADMIN) and `ip netns`: the test fails, never skips, when it
//! cannot create the namespaces. Namespaces and links get unique names (process id and
//! a counter) and are deleted when the test ends, also when it fails (a guard's `Drop`).

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const CORIUM: &str = env!("CARGO_BIN_EXE_corium");

/// How long `corium discover` collects answers. Servers delay their answers to a group
/// request by a random time within DEFAULT_LEISURE (5 s, RFC 7252 §8.2), so a window of
/// 2 s would be expected to miss some of them; 6 s gathers every answer.
const WAIT_SECS: &str = "6";

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Runs `ip ARGS`, panicking with its output when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip {}`: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "`ip {}` failed (this test needs root and `ip netns`): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a command inside namespace `ns`.
fn in_ns(ns: &str, program: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, program]);
    cmd
}

/// The namespaces of one test and the servers running in them; everything is killed
/// and deleted on drop.
struct Lab {
    namespaces: Vec<String>,
    servers: Vec<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.servers {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Deleting a namespace deletes its end of each veth pair, and so the pair.
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

impl Lab {
    /// A hub namespace with a bridge, and `nodes` namespaces each with an `eth0` on it,
    /// addressed 10.77.0.(i+1)/24 and up (with the IPv4 multicast range routed there,
    /// IPv6 duplicate address detection off so that link-local addresses work at once).
    fn new(nodes: usize) -> (Lab, Vec<String>) {
        let tag = format!(
            "crm{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let mut lab = Lab {
            namespaces: Vec::new(),
            servers: Vec::new(),
        };
        let hub = format!("{tag}-hub");
        ip(&["netns", "add", &hub]);
        lab.namespaces.push(hub.clone());
        ip(&["-n", &hub, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &hub,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        let mut names = Vec::new();
        for i in 0..nodes {
            let ns = format!("{tag}-n{i}");
            ip(&["netns", "add", &ns]);
            lab.namespaces.push(ns.clone());
            let port = format!("p{i}");
            ip(&[
                "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ]);
            ip(&["-n", &hub, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &hub, "link", "set", &port, "up"]);
            let sysctl = in_ns(&ns, "sysctl")
                .args(["-q", "-w", "net.ipv6.conf.eth0.accept_dad=0"])
                .output()
                .expect("run sysctl");
            assert!(
                sysctl.status.success(),
                "sysctl in {ns}: {}",
                String::from_utf8_lossy(&sysctl.stderr)
            );
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.77.0.{}/24", i + 1),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", "eth0"]);
            names.push(ns);
        }
        (lab, names)
    }

    /// Starts `corium serve` in `ns` on `addr` port 5683, joined to 224.0.1.187 on its
    /// eth0 (by address), and with `ipv6` also on `[::]:5683` joined to ff02::fd on
    /// eth0 (by interface index).
    fn serve(&mut self, ns: &str, addr: &str, ipv6: bool) {
        let mut args = vec![
            "serve".to_owned(),
            "--bind".to_owned(),
            format!("{addr}:5683"),
            "--join".to_owned(),
            format!("224.0.1.187@{addr}"),
        ];
        if ipv6 {
            let index = interface_index(ns, "eth0");
            args.extend([
                "--bind".to_owned(),
                "[::]:5683".to_owned(),
                "--join".to_owned(),
                format!("ff02::fd@{index}"),
            ]);
        }
        let mut child = in_ns(ns, CORIUM)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn corium serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the first line");
        if !line.starts_with("corium serving coap on ") {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!(
                "corium serve in {ns} did not start: {line:?} {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.servers.push(child);
    }
}

/// The interface index of `name` in `ns`.
fn interface_index(ns: &str, name: &str) -> u32 {
    let out = in_ns(ns, "cat")
        .arg(format!("/sys/class/net/{name}/ifindex"))
        .output()
        .expect("read ifindex");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no ifindex of {name} in {ns}"))
}

/// The IPv6 link-local address of `eth0` in `ns`.
fn link_local(ns: &str) -> String {
    let out = Command::new("ip")
        .args([
            "-n", ns, "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link",
        ])
        .output()
        .expect("ip addr show");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no link-local address in {ns}: {text}"))
        .to_owned()
}

fn discover(ns: &str, args: &[&str]) -> Output {
    let mut cmd = in_ns(ns, CORIUM);
    cmd.arg("discover").args(args).args(["--wait", WAIT_SECS]);
    // `--wait` bounds the run; the outer limit only guards against a hang.
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run corium discover");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("corium discover ends")
        .expect("corium discover output")
}

/// The `# ADDR: CODE` heads of a discovery's output, sorted.
fn heads(out: &Output) -> Vec<String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("/test"), "the links are listed: {stdout}");
    let mut heads: Vec<String> = stdout
        .lines()
        .filter(|l| l.starts_with("# "))
        .map(str::to_owned)
        .collect();
    heads.sort_unstable();
    heads
}

#[test]
fn discover_gathers_servers_in_other_namespaces() {
    let (mut lab, nodes) = Lab::new(4);
    let servers = &nodes[..3];
    let client = &nodes[3];
    for (i, ns) in servers.iter().enumerate() {
        lab.serve(ns, &format!("10.77.0.{}", i + 1), false);
    }
    // 224.0.1.187 from the client's eth0: every server answers from its own address.
    let out = discover(
        client,
        &[
            "coap://224.0.1.187/.well-known/core",
            "--multicast-if",
            "10.77.0.4",
        ],
    );
    let expected: Vec<String> = (1..=3)
        .map(|i| format!("# 10.77.0.{i}:5683: 2.05 Content"))
        .collect();
    assert_eq!(heads(&out), expected, "{out:?}");
    drop(lab);
}

/// The same over IPv6, ff02::fd on the client's eth0 (link-local scope, RFC 7252
/// §12.8); the answers come from the servers' link-local addresses.
///
/// IPv6: three servers join the link-local ff02::fd on their link's interface
/// (`--join ff02::fd@INDEX`, bound with that scope ID, RFC 4007 §11), and a group
/// discovery to `[ff02::fd%INDEX]` from the fourth namespace gathers each one's answer
/// from its link-local address.
#[test]
fn discover_gathers_servers_over_ipv6() {
    let (mut lab, nodes) = Lab::new(4);
    let servers = &nodes[..3];
    let client = &nodes[3];
    for (i, ns) in servers.iter().enumerate() {
        lab.serve(ns, &format!("10.77.0.{}", i + 1), true);
    }
    let index = interface_index(client, "eth0");
    let out = discover(
        client,
        &[&format!("coap://[ff02::fd%{index}]/.well-known/core")],
    );
    let got = heads(&out);
    assert_eq!(got.len(), 3, "{got:?}");
    for ns in servers {
        let ll = link_local(ns);
        assert!(
            got.iter().any(|h| h.starts_with(&format!("# [{ll}"))),
            "{ll} of {ns} answered: {got:?}"
        );
    }
    drop(lab);
}
