//! `corium serve --join` and `corium discover --wait` (RFC 7252 §8): two servers on one
//! host join 224.0.1.187 on the loopback interface; one group discovery lists both,
//! each under its own unicast address.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

const CORIUM: &str = env!("CARGO_BIN_EXE_corium");

/// A `corium serve`, killed when dropped.
struct Member(Child);

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn member(addr: &str) -> Member {
    let mut child = Command::new(CORIUM)
        .args(["serve", "--bind", addr, "--join", "224.0.1.187@127.0.0.1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn corium serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the first line");
    assert!(line.starts_with("corium serving coap on "), "{line:?}");
    Member(child)
}

#[test]
fn discover_gathers_every_group_member() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _a = member(&format!("127.0.0.1:{port}"));
    let _b = member(&format!("127.0.0.2:{port}"));
    // DEFAULT_LEISURE is 5 s (§8.2): the answers come within it.
    let out = Command::new(CORIUM)
        .args([
            "discover",
            &format!("coap://224.0.1.187:{port}"),
            "--wait",
            "6",
            "--multicast-if",
            "127.0.0.1",
        ])
        .output()
        .expect("run corium discover");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let mut heads: Vec<&str> = stdout.lines().filter(|l| l.starts_with("# ")).collect();
    heads.sort_unstable();
    assert_eq!(
        heads,
        [
            format!("# 127.0.0.1:{port}: 2.05 Content"),
            format!("# 127.0.0.2:{port}: 2.05 Content")
        ],
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains("/test"), "the links are listed: {stdout}");
}

#[test]
fn join_needs_a_fixed_port_and_a_group() {
    for (args, why) in [
        (vec!["--bind", "127.0.0.1:0", "--join", "all"], "fixed port"),
        (
            vec!["--bind", "127.0.0.1:5999", "--join", "10.0.0.1"],
            "not a multicast address",
        ),
    ] {
        let out = Command::new(CORIUM)
            .arg("serve")
            .args(&args)
            .output()
            .expect("run corium serve");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(why), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
}
