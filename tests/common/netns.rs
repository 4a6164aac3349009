//! A private network of Linux network namespaces, for the multi-host tests
//! (tests/netns.rs).
//!
//! A [`Lan`] is one test's network:
//! - a *switch* namespace that holds a bridge, so nothing is added to the
//!   root namespace and the machine's own network is never touched;
//! - one namespace per host, joined to the bridge by a veth pair and given
//!   its own IPv4 address, `10.213.<subnet>.<2 + host>`;
//! - the *observer*, address `.1` on the bridge itself, in the switch
//!   namespace: the test asks seeds for their status from there, and no
//!   fault below ever cuts it off.
//!
//! Faults are nftables rules:
//! - [`Lan::cut`] and [`Lan::isolate`]: each host drops, on **input**, the
//!   packets from the hosts it is cut from. Both ends of a cut drop, so no
//!   packet crosses it in either direction. Dropping on input is what a
//!   broken cable or a firewall does: the sender sees nothing, its TCP
//!   retransmits and times out. (Dropping on output instead would make the
//!   sender's own `connect` and `send` fail at once with EPERM, which no
//!   real partition does.)
//! - [`Lan::loss`]: `numgen random mod 100 < P drop` on the bridge's
//!   forward hook, in the switch namespace. Every IPv4 packet between two
//!   hosts crosses that hook exactly once, so each is lost with probability
//!   P; one rule covers every host; and the observer's status queries,
//!   which the bridge delivers locally instead of forwarding, are not
//!   disturbed, so the measurement does not perturb what it measures.
//! - [`Lan::heal`]: deletes the fault tables.
//!
//! Names carry the test process id and a letter per test, so tests running
//! in parallel, and concurrent runs, never collide: namespaces are
//! `gn<pid><tag>-sw` and `gn<pid><tag>-h<i>`, the bridge's ports
//! `gn<pid><tag>h<i>` (at most 15 characters, the kernel's limit). Dropping
//! the `Lan`, also when a test panics, kills every process still inside its
//! namespaces and deletes them, which deletes the veth pairs and the
//! bridge with them. Namespaces left by a run that was itself killed are
//! deleted by the next run (their process id is gone).

use std::{
    collections::BTreeSet,
    io::Write,
    net::Ipv4Addr,
    process::{Command, Stdio},
    sync::Mutex,
};

/// Set to 1 (as `.ci/run` does), a test that cannot build its network
/// fails instead of skipping.
pub const REQUIRE_ENV: &str = "GOSSIPNET_REQUIRE_NETNS";

/// nftables table of a host's partition rules.
const CUT_TABLE: &str = "gossipnet_cut";
/// nftables table of the bridge's random loss.
const LOSS_TABLE: &str = "gossipnet_loss";

/// `ip netns add` may race with itself when it first sets up /run/netns.
static SETUP: Mutex<()> = Mutex::new(());

pub struct Lan {
    prefix: String,
    subnet: u8,
    /// Host namespaces, in order; the switch namespace is separate.
    hosts: Vec<String>,
    switch: String,
    /// Per host, the addresses its input drops.
    cut: Vec<BTreeSet<Ipv4Addr>>,
    lossy: bool,
}

/// Runs `program args`, returning its standard output or a message with
/// its standard error.
fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<String, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    if let Some(input) = input {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .map_err(|e| format!("`{program}`: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("`{program}`: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    // "Uid:\treal\teffective\tsaved\tfs"
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

/// The process id in a namespace name of ours, `gn<pid><tag>-sw` or
/// `gn<pid><tag>-h<i>`.
pub fn owner(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("gn")?;
    let digits = rest.find(|c: char| !c.is_ascii_digit())?;
    let (pid, rest) = rest.split_at(digits);
    let mut chars = rest.chars();
    let tag = chars.next()?;
    let host = chars.as_str().strip_prefix('-')?;
    let host_ok = host == "sw"
        || host
            .strip_prefix('h')
            .is_some_and(|i| !i.is_empty() && i.chars().all(|c| c.is_ascii_digit()));
    (!pid.is_empty() && tag.is_ascii_lowercase() && host_ok).then_some(pid)
}

/// Deletes the namespaces of earlier runs whose process is gone.
fn sweep_stale() {
    let Ok(list) = run("ip", &["netns", "list"], None) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        if let Some(pid) = owner(name) {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                delete_namespace(name);
            }
        }
    }
}

/// Kills whatever still runs in `ns`, then deletes it.
fn delete_namespace(ns: &str) {
    if let Ok(pids) = run("ip", &["netns", "pids", ns], None) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let _ = run("ip", &["netns", "del", ns], None);
}

impl Lan {
    /// A switch and `hosts` hosts on subnet 10.213.`subnet`.0/24; `tag` (a
    /// lower-case letter) and `subnet` must differ between the tests of one
    /// process. Err gives the reason the machine cannot do it.
    pub fn new(tag: char, subnet: u8, hosts: usize) -> Result<Lan, String> {
        assert!(tag.is_ascii_lowercase() && hosts <= 99);
        if !is_root() {
            return Err("not root: network namespaces need root".into());
        }
        run("ip", &["-V"], None).map_err(|e| format!("no iproute2: {e}"))?;
        run("nft", &["--version"], None).map_err(|e| format!("no nftables: {e}"))?;
        let prefix = format!("gn{}{tag}", std::process::id());
        assert!(prefix.len() + 3 <= 15, "interface names must fit 15 bytes");
        let lan = Lan {
            switch: format!("{prefix}-sw"),
            hosts: (0..hosts).map(|i| format!("{prefix}-h{i}")).collect(),
            cut: vec![BTreeSet::new(); hosts],
            lossy: false,
            prefix,
            subnet,
        };
        {
            let _one_at_a_time = SETUP.lock().unwrap_or_else(|e| e.into_inner());
            sweep_stale();
            run("ip", &["netns", "add", &lan.switch], None)
                .map_err(|e| format!("cannot create a network namespace: {e}"))?;
        }
        // From here on, Drop cleans up whatever was made.
        lan.switch_nft("table inet gossipnet_probe {}\ndelete table inet gossipnet_probe\n")
            .map_err(|e| format!("nftables does not work in a namespace: {e}"))?;
        for ns in &lan.hosts {
            let _one_at_a_time = SETUP.lock().unwrap_or_else(|e| e.into_inner());
            run("ip", &["netns", "add", ns], None)?;
        }
        let mut switch = format!(
            "link set lo up\nlink add br0 type bridge\naddr add {}/24 dev br0\nlink set br0 up\n",
            lan.observer()
        );
        for (i, ns) in lan.hosts.iter().enumerate() {
            // Both ends are made straight in their namespaces.
            let port = format!("{}h{i}", lan.prefix);
            switch += &format!(
                "link add {port} type veth peer name eth0 netns {ns}\nlink set {port} master br0 up\n"
            );
        }
        run("ip", &["-n", &lan.switch, "-batch", "-"], Some(&switch))?;
        for (i, ns) in lan.hosts.iter().enumerate() {
            let host = format!(
                "link set lo up\naddr add {}/24 dev eth0\nlink set eth0 up\n",
                lan.ip(i)
            );
            run("ip", &["-n", ns, "-batch", "-"], Some(&host))?;
        }
        Ok(lan)
    }

    /// The address of host `i`.
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.subnet, 2 + i as u8)
    }

    /// The observer's address, on the bridge.
    pub fn observer(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.subnet, 1)
    }

    /// The launcher that runs a command on host `i`.
    pub fn on_host(&self, i: usize) -> [&str; 4] {
        ["ip", "netns", "exec", &self.hosts[i]]
    }

    /// The launcher that runs a command at the observer.
    pub fn on_observer(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.switch]
    }

    fn nft(ns: &str, script: &str) -> Result<String, String> {
        run("ip", &["netns", "exec", ns, "nft", "-f", "-"], Some(script))
    }

    fn switch_nft(&self, script: &str) -> Result<String, String> {
        Lan::nft(&self.switch, script)
    }

    /// Writes host `i`'s partition rules afresh (in one transaction).
    fn write_cut(&self, i: usize) {
        let ns = &self.hosts[i];
        let mut script = format!("table inet {CUT_TABLE} {{}}\ndelete table inet {CUT_TABLE}\n");
        if !self.cut[i].is_empty() {
            let ips: Vec<String> = self.cut[i].iter().map(|ip| ip.to_string()).collect();
            script += &format!(
                "table inet {CUT_TABLE} {{\n\
                 \tset cut {{ type ipv4_addr; elements = {{ {} }}; }}\n\
                 \tchain input {{ type filter hook input priority 0; policy accept; ip saddr @cut drop; }}\n\
                 }}\n",
                ips.join(", ")
            );
        }
        Lan::nft(ns, &script).unwrap_or_else(|e| panic!("partition rules on {ns}: {e}"));
    }

    /// No packet passes between any host of `a` and any host of `b`, in
    /// either direction, until [`Lan::heal`]. Cuts add up.
    pub fn cut(&mut self, a: &[usize], b: &[usize]) {
        for (from, to) in [(a, b), (b, a)] {
            for &i in from {
                let ips: Vec<Ipv4Addr> = to.iter().map(|&j| self.ip(j)).collect();
                self.cut[i].extend(ips);
            }
        }
        for i in a.iter().chain(b) {
            self.write_cut(*i);
        }
    }

    /// Cuts host `i` from every other host (not from the observer).
    pub fn isolate(&mut self, i: usize) {
        let others: Vec<usize> = (0..self.hosts.len()).filter(|j| *j != i).collect();
        self.cut(&[i], &others);
    }

    /// The bridge drops `percent` % of the IPv4 packets between hosts, each
    /// independently at random, until [`Lan::heal`].
    pub fn loss(&mut self, percent: u32) {
        self.switch_nft(&format!(
            "table bridge {LOSS_TABLE} {{}}\ndelete table bridge {LOSS_TABLE}\n\
             table bridge {LOSS_TABLE} {{\n\
             \tchain forward {{ type filter hook forward priority 0; policy accept; \
             meta protocol ip numgen random mod 100 < {percent} drop; }}\n\
             }}\n"
        ))
        .unwrap_or_else(|e| panic!("loss rule on the bridge: {e}"));
        self.lossy = true;
    }

    /// Ends every cut and the loss: the fault tables are deleted.
    pub fn heal(&mut self) {
        for i in 0..self.hosts.len() {
            if !self.cut[i].is_empty() {
                self.cut[i].clear();
                self.write_cut(i);
            }
        }
        if self.lossy {
            self.switch_nft(&format!("delete table bridge {LOSS_TABLE}\n"))
                .unwrap_or_else(|e| panic!("healing the bridge: {e}"));
            self.lossy = false;
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in self.hosts.iter().chain([&self.switch]) {
            delete_namespace(ns);
        }
    }
}

/// Why the namespace tests cannot run on this machine, if they cannot: a
/// trial network (a switch alone, with an nftables table) is built and
/// torn down. The harness reports the tests as ignored with this reason,
/// or, with `GOSSIPNET_REQUIRE_NETNS=1`, as failed.
pub fn unavailable() -> Option<String> {
    Lan::new('z', 250, 0)
        .err()
        .map(|reason| format!("needs root, iproute2 and nftables; here: {reason}"))
}
