//! Hosts for the fault suite: each node in its own network namespace, all on one bridge, so a
//! partition is a change of routes inside the namespaces (the kernel drops the packets), not a
//! hook in our own transport that the code under test could be wrong about.
//!
//! The test process stays in the root namespace and reaches every node through the bridge, as
//! clients spread over the network would; only node-to-node traffic is cut. A cut is a
//! `blackhole` route to the peer's address in the sender's namespace: its packets never leave
//! (the sender's socket sees `EINVAL`, the receiver silence). This machine's kernel has no
//! `prio` queueing discipline, so `tc` filters cannot drop by destination instead.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;

/// One namespace per node on a private bridge; removed when dropped.
pub(crate) struct Net {
    bridge: String,
    hosts: Vec<Host>,
    /// (from, to): packets from node `from` to node `to` are dropped.
    cut: BTreeSet<(usize, usize)>,
}

/// A node's namespace and address.
pub(crate) struct Host {
    pub(crate) ns: String,
    pub(crate) ip: Ipv4Addr,
}

/// Runs `ip` with `args`; the error names the command and what it printed.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether `ip route` already knows the /24 (another run's bridge).
fn subnet_in_use(net: &str) -> bool {
    Command::new("ip")
        .args(["-4", "route", "show", net])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(true)
}

impl Net {
    /// `n` namespaces on a new bridge, or why this machine cannot make them (not root, no
    /// `ip`, no network namespaces).
    pub(crate) fn create(n: usize) -> Result<Net, String> {
        let pid = std::process::id();
        // A /24 and names of our own: nextest runs each test in its own process, so the pid
        // tells concurrent runs apart; a subnet another run holds is skipped.
        let mut attempt = 0u32;
        let (a, b) = loop {
            let x = pid.wrapping_add(attempt.wrapping_mul(7919));
            let (a, b) = (100 + (x >> 8) % 100, x % 256);
            if !subnet_in_use(&format!("10.{a}.{b}.0/24")) {
                break (a, b);
            }
            attempt += 1;
            if attempt > 64 {
                return Err("no free 10.x.y.0/24 subnet for the test bridge".into());
            }
        };
        // Names follow the subnet, which is ours: a bridge of that name is another run's.
        let tag = format!("{a:02x}{b:02x}");
        let mut net = Net {
            bridge: format!("cfb{tag}"),
            hosts: Vec::new(),
            cut: BTreeSet::new(),
        };
        ip(&["link", "add", &net.bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("10.{a}.{b}.1/24"),
            "dev",
            &net.bridge,
        ])?;
        ip(&["link", "set", &net.bridge, "up"])?;
        for i in 0..n {
            let ns = format!("chatsdk-fault-{tag}-{i}");
            let veth = format!("cf{tag}v{i}");
            ip(&["netns", "add", &ns])?;
            // Pushed before the veth so that a failure below still removes the namespace.
            let addr = Ipv4Addr::new(10, a as u8, b as u8, 10 + i as u8);
            net.hosts.push(Host {
                ns: ns.clone(),
                ip: addr,
            });
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["link", "set", &veth, "master", &net.bridge])?;
            ip(&["link", "set", &veth, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    pub(crate) fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// Makes the cut set exactly `cut`: routes added and removed as needed.
    pub(crate) fn set_cuts(&mut self, cut: BTreeSet<(usize, usize)>) -> Result<(), String> {
        for &(from, to) in self.cut.difference(&cut) {
            let peer = format!("{}/32", self.hosts[to].ip);
            ip(&[
                "-n",
                &self.hosts[from].ns,
                "route",
                "del",
                "blackhole",
                &peer,
            ])?;
        }
        for &(from, to) in cut.difference(&self.cut) {
            let peer = format!("{}/32", self.hosts[to].ip);
            ip(&[
                "-n",
                &self.hosts[from].ns,
                "route",
                "add",
                "blackhole",
                &peer,
            ])?;
        }
        self.cut = cut;
        Ok(())
    }
}

/// The cut that keeps node pairs across `sides` from talking, both ways (within a side they
/// can).
pub(crate) fn partition_cut(sides: &[&[usize]]) -> BTreeSet<(usize, usize)> {
    let mut cut = BTreeSet::new();
    for (i, a) in sides.iter().enumerate() {
        for (j, b) in sides.iter().enumerate() {
            if i != j {
                for &x in a.iter() {
                    for &y in b.iter() {
                        cut.insert((x, y));
                    }
                }
            }
        }
    }
    cut
}

impl Drop for Net {
    fn drop(&mut self) {
        for h in &self.hosts {
            // Removing the namespace removes its end of the veth, and with it the pair.
            let _ = ip(&["netns", "del", &h.ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}
