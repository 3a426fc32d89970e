//! A network namespace joined to this one by veth links, for network partitions.
//!
//! A process started in it ([`Island::command`]) reaches the services of this namespace at
//! each link's outer address. [`Island::cut`] sets a link down: its packets are dropped both
//! ways with no reset and no error on either side, as in a real partition, while the other
//! links carry on. A proxy in user space cannot do this: its kernel acknowledges whatever
//! the client sends, so the client's TCP timers never see the path fail. Needs root
//! (CAP_NET_ADMIN), as the test machines give.

use std::ffi::OsStr;
use std::process::Command;

const NAME: &str = "weir-island";

pub struct Island {
    links: usize,
}

fn ip(args: &[&str]) -> std::process::Output {
    Command::new("ip").args(args).output().expect("running ip (iproute2)")
}

fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "ip {}: {} (an island needs root, or CAP_NET_ADMIN, and veth links)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn outside(link: usize) -> String {
    format!("wisl{link}")
}

impl Island {
    /// A namespace with `links` links (at most 250). Its name and addresses are fixed,
    /// so one island exists at a time; one left by a killed run is removed first.
    pub fn new(links: usize) -> Island {
        let _ = ip(&["netns", "del", NAME]);
        ip_ok(&["netns", "add", NAME]);
        let island = Island { links };
        ip_ok(&["netns", "exec", NAME, "ip", "link", "set", "lo", "up"]);
        for l in 0..links {
            let (out, inside) = (outside(l), format!("wisl{l}i"));
            let _ = ip(&["link", "del", &out]);
            ip_ok(&["link", "add", &out, "type", "veth", "peer", "name", &inside]);
            ip_ok(&["link", "set", &inside, "netns", NAME]);
            ip_ok(&["addr", "add", &format!("{}/30", Self::outer(l)), "dev", &out]);
            ip_ok(&["link", "set", &out, "up"]);
            ip_ok(&["netns", "exec", NAME, "ip", "addr", "add", &format!("{}/30", Self::inner(l)), "dev", &inside]);
            ip_ok(&["netns", "exec", NAME, "ip", "link", "set", &inside, "up"]);
        }
        island
    }

    /// This namespace's end of `link`: where a process on the island finds a service.
    pub fn outer(link: usize) -> String {
        format!("10.231.{link}.1")
    }

    /// The island's end of `link`: where this namespace finds a process on the island.
    pub fn inner(link: usize) -> String {
        format!("10.231.{link}.2")
    }

    /// The addresses of `link`, for a server's access rules.
    pub fn cidr(link: usize) -> String {
        format!("10.231.{link}.0/30")
    }

    /// `program` to be run on the island.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", NAME]).arg(program);
        cmd
    }

    /// Drops every packet on `link` until [`heal`](Self::heal).
    pub fn cut(&self, link: usize) {
        assert!(link < self.links, "no link {link}");
        ip_ok(&["link", "set", &outside(link), "down"]);
    }

    /// Lets `link` carry packets again; connections that outlived the cut go on.
    pub fn heal(&self, link: usize) {
        ip_ok(&["link", "set", &outside(link), "up"]);
    }
}

impl Drop for Island {
    /// Removing the namespace removes its links, and both ends of each.
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", NAME]);
    }
}
