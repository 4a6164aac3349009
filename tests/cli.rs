//! The `gossipnet` command line: config errors, and `gossipnet up` (R20, R22).

mod common;

use std::{
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

use common::{free_ports, BIN};

fn run_peer_with_config(name: &str, text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), text).unwrap();
    run_in(
        dir.path(),
        &["peer", "127.0.0.1:0", "--config", name, "--no-stdin"],
    )
}

/// Runs `gossipnet ARGS` in `dir` to its end, with no standard input;
/// returns its exit status and what it wrote on standard error.
fn run_in(dir: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Each of the `nodes` output files in `run_dir` ends with the clean
/// shutdown line.
fn assert_every_node_shut_down_cleanly(run_dir: &std::path::Path, nodes: usize) {
    let outputs: Vec<_> = std::fs::read_dir(run_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("outputfile_")
        })
        .collect();
    assert_eq!(outputs.len(), nodes, "{outputs:?}");
    for path in outputs {
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.trim_end().ends_with("Shutting down."),
            "{}: {text}",
            path.display()
        );
    }
}

#[test]
fn a_bad_config_line_exits_with_status_2_naming_file_and_line() {
    let (code, err) = run_peer_with_config(
        "config.csv",
        "127.0.0.1,5010\n127.0.0.1;5011\n127.0.0.1,5012\n",
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("config.csv:2:"), "{err}");
    assert!(
        err.contains("127.0.0.1;5011"),
        "the bad text is quoted: {err}"
    );
}

/// The options of `--help`, one per line, from the first `-` on; all but
/// `--version`, which only a whole program has.
fn options_in_help(help: &str) -> Vec<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-') && !l.starts_with("-V, --version"))
        .map(str::to_string)
        .collect()
}

#[test]
fn gossipnet_peer_takes_the_options_of_gossipnet_peer_and_reports_errors_the_same_way() {
    let help = |cmd: &mut Command| String::from_utf8(cmd.output().unwrap().stdout).unwrap();
    let full = options_in_help(&help(Command::new(BIN).args(["peer", "--help"])));
    let lean = options_in_help(&help(Command::new(common::PEER_BIN).arg("--help")));
    assert!(
        full.iter().any(|l| l.starts_with("--gossip-interval")),
        "{full:?}"
    );
    assert_eq!(lean, full);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.csv"),
        "127.0.0.1,5010\n10.0.0.1:x\n",
    )
    .unwrap();
    let out = Command::new(common::PEER_BIN)
        .current_dir(dir.path())
        .args(["127.0.0.1:0", "--config", "config.csv", "--no-stdin"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("config.csv:2:"), "{err}");
}

#[test]
fn a_single_seed_is_refused() {
    let (code, err) = run_peer_with_config("config.txt", "127.0.0.1:5010\n");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("config.txt") && err.contains("at least 2"),
        "{err}"
    );
}

#[test]
fn a_toml_typo_names_its_line() {
    let (code, err) = run_peer_with_config(
        "config.toml",
        "seeds = [\"127.0.0.1:5010\", \"127.0.0.1:5011\"]\n[peer]\ngossip_intervall = \"1s\"\n",
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("config.toml:3:"), "{err}");
}

#[test]
fn a_missing_default_config_says_which_names_were_tried() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = run_in(dir.path(), &["peer", "127.0.0.1", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("config.csv") && err.contains("--config"),
        "{err}"
    );
}

#[test]
fn a_peer_with_a_malformed_identity_key_stops_naming_the_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(2);
    let config: String = ports.iter().map(|p| format!("127.0.0.1:{p}\n")).collect();
    std::fs::write(dir.path().join("config.txt"), config).unwrap();
    let data = dir.path().join("peer-data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("identity.key"), "not a key\n").unwrap();
    // Exits at once: no seed is needed to find the key bad.
    let args = [
        "peer",
        "127.0.0.1:0",
        "--no-stdin",
        "--data-dir",
        "peer-data",
    ];
    let (code, err) = run_in(dir.path(), &args);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("peer-data/identity.key") || err.contains("peer-data\\identity.key"),
        "{err}"
    );
    assert!(
        err.contains("malformed") && err.contains("delete it"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("identity.key")).unwrap(),
        "not a key\n",
        "the bad key file was changed"
    );
    let outputs = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("outputfile_")
        })
        .count();
    assert_eq!(outputs, 0, "files were written before the key was checked");
}

#[test]
fn a_seed_must_be_listed_in_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(3);
    let config: String = ports[..2]
        .iter()
        .map(|p| format!("127.0.0.1:{p}\n"))
        .collect();
    std::fs::write(dir.path().join("config.txt"), config).unwrap();
    let (code, err) = run_in(dir.path(), &["seed", "127.0.0.1", &ports[2].to_string()]);
    // A config error, like a bad line in the file (README, "Config formats").
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is not listed in") && err.contains("config.txt"),
        "{err}"
    );
    assert!(err.contains(&format!("127.0.0.1:{}", ports[0])), "{err}");
}

/// Runs `gossipnet ARGS` in `dir` like [`run_in`], but kills it after
/// `limit` (a node that should have refused to start may run instead).
fn run_in_for(dir: &std::path::Path, args: &[&str], limit: Duration) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (code, err)
}

#[test]
fn every_disagreement_between_the_address_and_the_config_exits_with_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(2);
    let config: String = ports.iter().map(|p| format!("127.0.0.1:{p}\n")).collect();
    std::fs::write(dir.path().join("config.txt"), config).unwrap();
    let seed_addr = format!("127.0.0.1:{}", ports[0]);
    let cases: [(&[&str], &str); 3] = [
        (&["peer", &seed_addr, "--no-stdin"], "listed as a seed"),
        (&["seed", "127.0.0.1:0"], "port 0"),
        (&["peer", "0.0.0.0:6001", "--no-stdin"], "0.0.0.0"),
    ];
    for (args, says) in cases {
        let (code, err) = run_in_for(dir.path(), args, Duration::from_secs(10));
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn command_line_addresses_are_read_with_the_config_files_rules_and_words() {
    let dir = tempfile::tempdir().unwrap();
    // Line 2 is bad: a node that got past its address stops there, naming it.
    std::fs::write(
        dir.path().join("config.txt"),
        "127.0.0.1:5010\nnot-a-seed\n",
    )
    .unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &["seed", "5060", "127.0.0.1"],
            "\"5060 127.0.0.1\": the IP comes first; write 127.0.0.1 5060",
        ),
        (
            &["peer", "127.0.0.1:70000"],
            "\"127.0.0.1:70000\": port 70000 is out of range; use a port from 1 to 65535",
        ),
        (
            &["peer", "127.0.0.1", "70000"],
            "port 70000 is out of range; use a port from 1 to 65535",
        ),
        (
            &["peer", "127.0.0.1", "abc"],
            "\"abc\" is not a port number",
        ),
        (
            &["peer", "seed.example.org:6001"],
            "\"seed.example.org\" is a host name; use an IP address such as 127.0.0.1",
        ),
        (
            &["peer", "localhost"],
            "\"localhost\" has no port; write e.g. localhost:6001",
        ),
    ];
    for (args, says) in cases {
        let (code, err) = run_in(dir.path(), args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // localhost is 127.0.0.1: accepted, so the config is read next.
    for address in [&["localhost:0"][..], &["localhost", "0"]] {
        let args: Vec<&str> = ["peer"].iter().chain(address).copied().collect();
        let (code, err) = run_in(dir.path(), &args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("config.txt:2:"), "{args:?}: {err}");
    }
}

#[test]
fn an_unspecified_address_in_a_config_is_refused_as_on_the_command_line() {
    for (name, text, line) in [
        ("config.txt", "127.0.0.1:5010\n0.0.0.0:5011\n", 2),
        ("config.csv", "::,5010\n127.0.0.1,5011\n", 1),
        (
            "config.toml",
            "seeds = [\"127.0.0.1:5010\", { ip = \"0.0.0.0\", port = 5011 }]\n",
            1,
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name), text).unwrap();
        let (code, err) = run_in_for(
            dir.path(),
            &["peer", "127.0.0.1:0", "--no-stdin"],
            Duration::from_secs(10),
        );
        assert_eq!(code, Some(2), "{name}: {err}");
        assert!(err.contains(&format!("{name}:{line}:")), "{name}: {err}");
        assert!(err.contains("every interface"), "{name}: {err}");
    }
}

#[test]
fn the_config_file_may_be_the_last_word_after_the_address() {
    let dir = tempfile::tempdir().unwrap();
    // No default config here: only the word can name it.
    std::fs::write(dir.path().join("seeds.txt"), "127.0.0.1:5010\nnot-a-seed\n").unwrap();
    for args in [
        &["peer", "127.0.0.1", "6000", "seeds.txt", "--no-stdin"][..],
        &["peer", "127.0.0.1:6000", "seeds.txt", "--no-stdin"],
        &["seed", "5010", "seeds.txt"],
    ] {
        let (code, err) = run_in(dir.path(), args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("seeds.txt:2:"), "{args:?}: {err}");
    }
    let out = Command::new(common::PEER_BIN)
        .current_dir(dir.path())
        .args(["127.0.0.1", "6000", "seeds.txt", "--no-stdin"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("seeds.txt:2:"), "{err}");
    // Given twice is a mistake, not a choice.
    let (code, err) = run_in(
        dir.path(),
        &[
            "peer",
            "127.0.0.1",
            "6000",
            "seeds.txt",
            "--config",
            "seeds.txt",
        ],
    );
    assert_eq!(code, 2, "{err}");
}

#[test]
fn seeds_and_peers_given_only_a_port_take_the_ip_of_the_config_or_127_0_0_1() {
    use gossipnet::proto::Event;
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(4);
    // On Linux all of 127/8 is this machine: a seed on 127.0.0.2 shows
    // that its IP came from the config and not from a default.
    let first_ip = if cfg!(target_os = "linux") {
        "127.0.0.2"
    } else {
        "127.0.0.1"
    };
    std::fs::write(
        dir.path().join("seeds.txt"),
        format!("{first_ip}:{} 127.0.0.1:{}\n", ports[0], ports[1]),
    )
    .unwrap();
    let word = |i: usize| ports[i].to_string();
    let mut seeds: Vec<common::Proc> = (0..2)
        .map(|i| {
            let args = ["seed".into(), word(i), "seeds.txt".into()];
            common::Proc::spawn(dir.path(), &format!("seed-{i}"), &args, false)
        })
        .collect();
    for seed in &mut seeds {
        seed.wait_event("the seed cluster to form", common::START, |e| {
            matches!(e, Event::ClusterFormed { .. })
        });
    }
    assert_eq!(
        seeds[0].addr().to_string(),
        format!("{first_ip}:{}", ports[0])
    );
    assert_eq!(
        seeds[1].addr().to_string(),
        format!("127.0.0.1:{}", ports[1])
    );
    let mut peers: Vec<common::Proc> = (2..4)
        .map(|i| {
            let args = [
                "peer".into(),
                word(i),
                "seeds.txt".into(),
                "--no-stdin".into(),
            ];
            common::Proc::spawn(dir.path(), &format!("peer-{i}"), &args, false)
        })
        .collect();
    for (peer, i) in peers.iter_mut().zip(2..) {
        peer.wait_event("registered", common::START, |e| {
            matches!(e, Event::Registered { .. })
        });
        assert_eq!(peer.addr().to_string(), format!("127.0.0.1:{}", ports[i]));
    }

    // Seeds on other machines: a peer on 127.0.0.1 could not be reached.
    let away = tempfile::tempdir().unwrap();
    std::fs::write(
        away.path().join("config.txt"),
        "10.0.0.1:5010\n10.0.0.2:5010\n",
    )
    .unwrap();
    let (code, err) = run_in(away.path(), &["peer", "6001", "--no-stdin"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("give the IP"), "{err}");
    // Several seeds with that port, none of them here: which one is meant?
    let (code, err) = run_in(away.path(), &["seed", "5010"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("10.0.0.1:5010, 10.0.0.2:5010") && err.contains("give the IP"),
        "{err}"
    );
}

/// `cargo run --release -- up` builds only `gossipnet`; `up` then builds
/// `gossipnet-peer` with the cargo that started it (here a stand-in that
/// records its arguments and puts the real one in place) and runs its
/// peers with it, as the README's sample output shows.
#[cfg(unix)]
#[test]
fn up_under_cargo_run_builds_the_lean_peer_and_runs_its_peers_with_it() {
    use std::os::unix::fs::PermissionsExt;
    // Beside the real target directory, so that a hard link can stand
    // for the binary `cargo run` built.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let target = dir.path().join("target");
    let release = target.join("release");
    std::fs::create_dir_all(&release).unwrap();
    std::fs::write(
        target.join("CACHEDIR.TAG"),
        "Signature: 8a477f597d28d172789f06886806bc55\n",
    )
    .unwrap();
    let exe = release.join("gossipnet");
    std::fs::hard_link(BIN, &exe).unwrap();
    let lean = release.join("gossipnet-peer");
    let log = dir.path().join("cargo-args.txt");
    let cargo = dir.path().join("cargo");
    std::fs::write(
        &cargo,
        format!(
            "#!/bin/sh\necho \"$@\" > '{}'\nln '{}' '{}'\n",
            log.display(),
            common::PEER_BIN,
            lean.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();

    // `up` for `duration`, as `cargo run` starts it; its standard output.
    let up_under_cargo = |duration: &str, run_dir: &str| {
        let out = Command::new(&exe)
            .current_dir(dir.path())
            .args(["up", "--seeds", "2", "--peers", "2", "--duration", duration])
            .args(["--run-dir", run_dir])
            .env("CARGO", &cargo)
            .env("CARGO_MANIFEST_DIR", env!("CARGO_MANIFEST_DIR"))
            .env("CARGO_PKG_NAME", "gossipnet")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(
            stdout.contains(&format!("peers run: {}\n", lean.display())),
            "{stdout}\n{stderr}"
        );
    };
    up_under_cargo("2s", "run");
    let args = std::fs::read_to_string(&log).expect("up ran cargo");
    assert!(
        args.starts_with("build --bin gossipnet-peer --profile release")
            && args.contains(&format!("--target-dir {}", target.display())),
        "{args}"
    );
    // Once built and fresh, it is not built again.
    std::fs::remove_file(&log).unwrap();
    up_under_cargo("1s", "run2");
    assert!(!log.exists(), "cargo ran again");
}

#[test]
fn up_with_a_duration_runs_a_network_and_stops_it_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let (status, stdout) = run_up_to_the_end(
        dir.path(),
        &[
            "--seeds",
            "3",
            "--peers",
            "4",
            "--duration",
            "3s",
            "--gossip-interval",
            "200ms",
            "--gossip-count",
            "5",
        ],
    );
    assert!(status.success(), "{stdout}");
    // gossipnet-peer is built beside gossipnet, so the peers run it.
    assert!(
        stdout.contains(&format!("peers run: {}", common::PEER_BIN)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "run directory: {}",
            run_dir.canonicalize().unwrap().display()
        )),
        "{stdout}"
    );
    let last = stdout
        .lines()
        .find(|l| l.starts_with("final: "))
        .expect("final summary");
    // 4 peers x 5 messages, and every one delivered to the peers that had joined.
    assert!(
        last.contains("peers 4/4 up") && last.contains("20 messages"),
        "{last}"
    );
    let delivered = last
        .split("delivered ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    let (got, want) = delivered.split_once('/').unwrap();
    assert_eq!(got, want, "{last}");
    assert!(want.parse::<u32>().unwrap() >= 3 * 5, "{last}");
    // Every node was told to stop and did so cleanly.
    assert_every_node_shut_down_cleanly(&run_dir, 7);
}

#[test]
fn up_takes_add_kill_list_and_survives_a_bad_command() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, mut lines) = common::start_up(
        dir.path(),
        &["--seeds", "2", "--peers", "2", "--gossip-count", "0"],
        true,
    );
    let mut stdin = child.0.stdin.take().unwrap();
    let deadline = Duration::from_secs(20);
    lines.wait_line("started peer-2", deadline);

    writeln!(stdin, "add").unwrap();
    let started = lines.wait_line("started peer-3 on ", deadline);
    let port = started.rsplit(':').next().unwrap().trim().to_string();

    writeln!(stdin, "frobnicate").unwrap();
    lines.wait_line("error: unknown command `frobnicate`", deadline);
    writeln!(stdin, "kill 1").unwrap();
    lines.wait_line("error: no node on port 1", deadline);

    writeln!(stdin, "kill {port}").unwrap();
    lines.wait_line(&format!("killed peer-3 (port {port})"), deadline);
    writeln!(stdin, "list").unwrap();
    lines.wait_line("role", deadline);
    let rows: Vec<String> = (0..5).map(|_| lines.wait_line("", deadline)).collect();
    let killed = rows
        .iter()
        .find(|r| r.contains(&format!("127.0.0.1:{port} ")))
        .expect("killed peer listed");
    assert!(killed.contains("killed"), "{killed}");
    assert_eq!(
        rows.iter()
            .filter(|r| r.starts_with("seed") && r.contains("running"))
            .count(),
        2,
        "{rows:?}"
    );
    assert_eq!(
        rows.iter()
            .filter(|r| r.starts_with("peer") && r.contains("running"))
            .count(),
        2,
        "{rows:?}"
    );

    writeln!(stdin, "exit").unwrap();
    lines.wait_line("stopped every node", deadline);
    let status = common::wait_for(
        "up to exit",
        deadline,
        || child.0.try_wait().unwrap(),
        || "still running".into(),
    );
    assert!(status.success());
}

/// Runs `gossipnet up` in `dir` with `args` and run directory `run` until
/// it stops by itself; its exit status and standard output.
fn run_up_to_the_end(dir: &std::path::Path, args: &[&str]) -> (std::process::ExitStatus, String) {
    let (mut child, mut lines) = common::start_up(dir, args, false);
    lines.wait_line("stopped every node", Duration::from_secs(60));
    let status = common::wait_for(
        "up to exit",
        Duration::from_secs(10),
        || child.0.try_wait().unwrap(),
        || "still running".into(),
    );
    (status, lines.seen.join("\n") + "\n")
}

/// The rows of the `list` table printed after the script's `> list`
/// number `n` (from 0), keyed by node name: (status, degree, messages).
fn list_table(
    stdout: &str,
    n: usize,
) -> std::collections::BTreeMap<String, (String, String, String)> {
    let after = stdout
        .split("> list\n")
        .nth(n + 1)
        .unwrap_or_else(|| panic!("no list number {n} in:\n{stdout}"));
    after
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("seed ") || l.starts_with("peer "))
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (
                cols[1].to_string(),
                (
                    cols[3].to_string(),
                    cols[4].to_string(),
                    cols[5].to_string(),
                ),
            )
        })
        .collect()
}

#[cfg(unix)]
#[test]
fn up_runs_a_script_whose_commands_change_what_list_shows() {
    let dir = tempfile::tempdir().unwrap();
    let script = "\
add
list
pause peer-1
list
send peer-2 hello from the script
sleep 1s
resume peer-1
list
kill peer-2
stop peer-3
frobnicate
resume peer-2
list
stats
topology --json topology.json
exit
";
    std::fs::write(dir.path().join("script.txt"), script).unwrap();
    let (status, stdout) = run_up_to_the_end(
        dir.path(),
        &[
            "--seeds",
            "2",
            "--peers",
            "2",
            "--gossip-count",
            "0",
            "--script",
            "script.txt",
        ],
    );
    assert!(status.success(), "{stdout}");

    let status_of = |n: usize, name: &str| list_table(&stdout, n)[name].0.clone();
    // `add` started a third peer.
    assert_eq!(list_table(&stdout, 0).len(), 5, "{stdout}");
    assert_eq!(status_of(0, "peer-3"), "running", "{stdout}");
    assert_eq!(status_of(1, "peer-1"), "paused", "{stdout}");
    assert_eq!(status_of(2, "peer-1"), "running", "{stdout}");
    // peer-2 gossiped the line it was sent.
    let (_, _, seen) = &list_table(&stdout, 2)["peer-2"];
    assert!(seen.parse::<u32>().unwrap() >= 1, "{stdout}");
    assert_eq!(status_of(3, "peer-2"), "killed", "{stdout}");
    assert_eq!(status_of(3, "peer-3"), "stopped", "{stdout}");
    // `stop` is SIGTERM: the peer leaves, and says so.
    assert!(
        stdout.contains(": it left, LEAVE sent to 2 seed(s) and"),
        "{stdout}"
    );
    assert_eq!(status_of(3, "peer-1"), "running", "{stdout}");
    // Mistakes get one line each, and the script goes on.
    assert!(
        stdout.contains("error: unknown command `frobnicate`"),
        "{stdout}"
    );
    assert!(stdout.contains("error: peer-2 (port "), "{stdout}");
    assert!(stdout.contains(") is killed"), "{stdout}");
    let messages = stdout
        .lines()
        .find_map(|l| l.strip_prefix("messages:"))
        .expect("stats printed");
    assert!(messages.trim().parse::<u32>().unwrap() >= 1, "{stdout}");
    let topology: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("topology.json")).unwrap())
            .unwrap();
    assert_eq!(topology["nodes"].as_array().unwrap().len(), 5, "{topology}");
    assert!(topology["links"].is_array(), "{topology}");
}

#[test]
fn up_with_a_config_starts_its_seeds_and_passes_its_settings_to_the_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(2);
    let config = format!(
        "seeds = [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\n\n[peer]\ngossip_count = 2\ngossip_interval = \"100ms\"\nping_interval = \"3s\"\n",
        ports[0], ports[1]
    );
    std::fs::write(dir.path().join("mine.toml"), config).unwrap();
    let (_, stdout) = run_up_to_the_end(
        dir.path(),
        &["--config", "mine.toml", "--peers", "2", "--duration", "2s"],
    );
    assert!(
        stdout.contains(&format!(
            "seeds: 127.0.0.1:{}, 127.0.0.1:{}",
            ports[0], ports[1]
        )),
        "{stdout}"
    );
    // The nodes read the file's settings: 2 peers x 2 messages.
    let last = stdout.lines().find(|l| l.starts_with("final: ")).unwrap();
    assert!(last.contains("4 messages"), "{last}");
    let written = std::fs::read_to_string(dir.path().join("run/config.toml")).unwrap();
    assert!(written.contains("ping_interval = \"3s\""), "{written}");
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_up_and_every_node_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, mut lines) =
        common::start_up(dir.path(), &["--seeds", "2", "--peers", "2"], false);
    lines.wait_line("started peer-2", Duration::from_secs(20));
    let pid = nix::unistd::Pid::from_raw(child.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = common::wait_for(
        "up to exit after SIGINT",
        Duration::from_secs(15),
        || child.0.try_wait().unwrap(),
        || "still running".into(),
    );
    assert!(status.success(), "{status}");
    assert_every_node_shut_down_cleanly(&dir.path().join("run"), 4);
}

#[test]
fn sim_prints_a_json_report_that_tools_can_read() {
    let out = Command::new(BIN)
        .args([
            "sim",
            "--peers",
            "60",
            "--seed",
            "2",
            "--crash-fraction",
            "0.1",
            "--json",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["peers"], 60);
    assert_eq!(report["overlay"]["connected"], true);
    assert_eq!(report["dissemination"]["coverage"], 1.0);
    assert_eq!(report["failures"]["crashed"], 6);
    assert_eq!(report["failures"]["false_removals"], 0);
}

#[test]
fn sim_refuses_nonsense_with_a_fix() {
    for (args, needle) in [
        (["--latency", "20ms..1ms"], "runs backwards"),
        (["--loss", "1.5"], "not between 0 and 1"),
    ] {
        let out = Command::new(BIN)
            .arg("sim")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{stderr}");
    }
}
