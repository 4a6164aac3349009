//! Config files: the list of seed nodes every seed and peer starts from (R20).
//!
//! Three formats are read, because the earlier Python systems this network
//! replaces used `config.csv`, `config.txt` and `config.yml`, and their files
//! should keep working unchanged:
//!
//! * **Line format** (any file that is not `.toml`, `.yml` or `.yaml`, e.g.
//!   `config.csv`, `config.txt`): one or more seed addresses per line, each
//!   either `IP,Port` (`127.0.0.1,5010`, `::1,5010`) or `IP:PORT`
//!   (`127.0.0.1:5010`, `[::1]:5010`), separated by whitespace. Both forms are
//!   accepted in every such file so that nobody has to remember which file
//!   wants which separator.
//! * **TOML** (`.toml`) and **YAML** (`.yml`, `.yaml`): a `seeds` list of
//!   `"IP:PORT"` strings or `{ ip, port }` tables, plus an optional `peer`
//!   section overriding peer settings. These exist because the line format
//!   has no room for settings.
//!
//! Every format allows blank lines and `#` comments. Addresses must be IP
//! literals, or `localhost`, which is read as 127.0.0.1 without a lookup:
//! seeds are dialled before anything else runs, and a name lookup that
//! silently resolves differently on each machine would split the network.
//! An unspecified address (`0.0.0.0`, `::`) is refused: a node's address
//! is its identity, and nobody can dial "every interface".
//!
//! The command line's addresses (`gossipnet seed 127.0.0.1:5010`) are read
//! by [`parse_node_address`] and its siblings here, so that a mistake gets
//! the same words in a file as on the command line.
//!
//! Errors always name the file and, where one line is at fault, that line, and
//! say how to fix it: one config file is shared by every seed and peer, so a
//! mistake in it stops them all, and the fix should not need guesswork.

use std::{
    fmt,
    marker::PhantomData,
    net::{IpAddr, SocketAddr},
    num::NonZeroU32,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::proto::{message::MAX_FRAME_LEN, peer::PeerSettings};

/// A loaded config file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it came from, as given.
    pub path: PathBuf,
    /// Seed addresses in file order, no duplicates, at least 2.
    pub seeds: Vec<SocketAddr>,
    /// Peer settings the file sets; `None` = not set (the caller applies defaults).
    pub peer: PeerOverrides,
    /// The network key file (`network_key`), relative paths taken from
    /// the config file's directory; `None`: connections are not encrypted.
    pub network_key: Option<PathBuf>,
    /// Seeds: most peers registered from one IP address
    /// (`max_peers_per_ip`); `None`: no cap.
    pub max_peers_per_ip: Option<u32>,
}

/// Peer settings a config file may override; `None` means the file left it alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerOverrides {
    /// How often a peer creates a gossip message.
    pub gossip_interval: Option<Duration>,
    /// How many gossip messages a peer creates in total (0 = none).
    pub gossip_count: Option<u32>,
    /// Cap on the links a joining peer opens; validated >= 1.
    pub max_links: Option<u32>,
    /// Zipf exponent of the number of links; validated > 1.0.
    pub link_exponent: Option<f64>,
    /// How often a peer checks each neighbour with a PING.
    pub ping_interval: Option<Duration>,
    /// Consecutive missed PINGs that make a neighbour unresponsive; >= 1.
    pub ping_misses: Option<u32>,
    /// Also check neighbours' hosts with ICMP echo.
    pub icmp: Option<bool>,
    /// Longest gossip text a peer creates or accepts, in bytes; validated
    /// within [`MAX_GOSSIP_BYTES_RANGE`].
    pub max_gossip_bytes: Option<u32>,
}

/// The values `max_gossip_bytes` may take: room for the
/// `<timestamp>:<IP>:` prefix and some text, and at most half a frame
/// ([`MAX_FRAME_LEN`]), so that a message with its JSON escapes still
/// fits in one.
pub const MAX_GOSSIP_BYTES_RANGE: std::ops::RangeInclusive<u32> = 128..=(MAX_FRAME_LEN as u32 / 2);

impl PeerOverrides {
    /// Keeps every setting set here and takes the rest from `base`.
    pub fn or(self, base: PeerOverrides) -> PeerOverrides {
        PeerOverrides {
            gossip_interval: self.gossip_interval.or(base.gossip_interval),
            gossip_count: self.gossip_count.or(base.gossip_count),
            max_links: self.max_links.or(base.max_links),
            link_exponent: self.link_exponent.or(base.link_exponent),
            ping_interval: self.ping_interval.or(base.ping_interval),
            ping_misses: self.ping_misses.or(base.ping_misses),
            icmp: self.icmp.or(base.icmp),
            max_gossip_bytes: self.max_gossip_bytes.or(base.max_gossip_bytes),
        }
    }

    /// `settings` with every set value replaced.
    pub fn apply_to(&self, mut settings: PeerSettings) -> PeerSettings {
        if let Some(v) = self.gossip_interval {
            settings.gossip_interval = v;
        }
        if let Some(v) = self.gossip_count {
            settings.gossip_count = v;
        }
        if let Some(v) = self.max_links.and_then(NonZeroU32::new) {
            settings.max_links = v;
        }
        if let Some(v) = self.link_exponent {
            settings.link_exponent = v;
        }
        if let Some(v) = self.ping_interval {
            settings.ping_interval = v;
        }
        if let Some(v) = self.ping_misses.and_then(NonZeroU32::new) {
            settings.ping_misses = v;
        }
        if let Some(v) = self.icmp {
            settings.icmp = v;
        }
        if let Some(v) = self.max_gossip_bytes {
            settings.max_gossip_bytes = v as usize;
        }
        settings
    }

    /// The set values as the body of a TOML `[peer]` table.
    pub fn to_toml(&self) -> String {
        let mut text = String::new();
        if let Some(v) = self.gossip_interval {
            text += &format!("gossip_interval = \"{}\"\n", humantime::format_duration(v));
        }
        if let Some(v) = self.gossip_count {
            text += &format!("gossip_count = {v}\n");
        }
        if let Some(v) = self.max_links {
            text += &format!("max_links = {v}\n");
        }
        if let Some(v) = self.link_exponent {
            text += &format!("link_exponent = {v:?}\n");
        }
        if let Some(v) = self.ping_interval {
            text += &format!("ping_interval = \"{}\"\n", humantime::format_duration(v));
        }
        if let Some(v) = self.ping_misses {
            text += &format!("ping_misses = {v}\n");
        }
        if let Some(v) = self.icmp {
            text += &format!("icmp = {v}\n");
        }
        if let Some(v) = self.max_gossip_bytes {
            text += &format!("max_gossip_bytes = {v}\n");
        }
        text
    }
}

/// Why a config file could not be used. Loading changes no state, so after
/// any of these nothing was loaded and the caller may simply report and exit.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8); nothing was loaded.
    #[error("{}: cannot read the config file: {source}; check the path or pass --config FILE", path.display())]
    Read {
        /// The file as given.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// One line of the file is wrong (syntax, address, setting); nothing was loaded.
    #[error("{}:{line}: {message}", path.display())]
    Invalid {
        /// The file as given.
        path: PathBuf,
        /// 1-based line number of the offending text.
        line: usize,
        /// What is wrong, with the text quoted, and how to fix it.
        message: String,
    },
    /// The file as a whole is wrong (e.g. too few seeds), or the bad line
    /// could not be located; nothing was loaded.
    #[error("{}: {message}", path.display())]
    File {
        /// The file as given.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// No --config was given and none of the default names exists; nothing was loaded.
    #[error(
        "no config file in {}: looked for {}; pass --config FILE or create one of these",
        dir.display(),
        searched_names().join(", ")
    )]
    NoDefault {
        /// The directory searched.
        dir: PathBuf,
    },
}

/// Names tried, in order, when --config is not given.
pub const DEFAULT_NAMES: [&str; 4] = ["config.csv", "config.txt", "config.toml", "config.yml"];

/// `.yaml` is the spelling YAML's own docs recommend, so it is accepted too,
/// but after `.yml`, which is what the Python systems wrote.
const EXTRA_DEFAULT_NAME: &str = "config.yaml";

fn searched_names() -> Vec<&'static str> {
    DEFAULT_NAMES
        .iter()
        .copied()
        .chain([EXTRA_DEFAULT_NAME])
        .collect()
}

/// First of DEFAULT_NAMES that exists in `dir` (also accept config.yaml after config.yml).
pub fn find_default(dir: &Path) -> Result<PathBuf, ConfigError> {
    searched_names()
        .into_iter()
        .map(|name| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| ConfigError::NoDefault {
            dir: dir.to_path_buf(),
        })
}

/// Read and parse a file; the format comes from the extension.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parse text as if read from `path` (format from path's extension).
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    // Editors on Windows like to start files with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let src = Source {
        path,
        text,
        format: Format::of(path),
    };
    let FileSettings {
        seeds,
        peer,
        network_key,
        max_peers_per_ip,
    } = match src.format {
        Format::Lines => FileSettings {
            seeds: parse_lines(&src)?,
            ..FileSettings::default()
        },
        Format::Toml => parse_tree(&src, toml_tree(&src)?)?,
        Format::Yaml => parse_tree(&src, yaml_tree(&src)?)?,
    };
    let network_key = network_key.map(|key: PathBuf| match path.parent() {
        Some(dir) if key.is_relative() => dir.join(key),
        _ => key,
    });
    Ok(Config {
        path: path.to_path_buf(),
        seeds,
        peer,
        network_key,
        max_peers_per_ip,
    })
}

/// Parse a human duration such as "200ms", "5s", "1m30s"; error text suitable for clap value_parser and config errors.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!("\"{text}\" is not a duration ({e}); write e.g. \"200ms\", \"5s\" or \"1m30s\"")
    })
}

// ---------------------------------------------------------------------------
// Peer settings

/// One settable `[peer]` key. Adding a setting means adding a field to
/// `PeerOverrides` and one entry to `PEER_KEYS`; the unknown-key message and
/// all parsing follow from the table.
struct PeerKey {
    name: &'static str,
    /// Checks the value and stores it; the error says what is wrong with it.
    apply: fn(&Node, &mut PeerOverrides) -> Result<(), String>,
}

const PEER_KEYS: &[PeerKey] = &[
    PeerKey {
        name: "gossip_interval",
        apply: |value, peer| {
            peer.gossip_interval = Some(positive_duration(value)?);
            Ok(())
        },
    },
    PeerKey {
        name: "gossip_count",
        apply: |value, peer| {
            peer.gossip_count = Some(whole_number(value, 0)?);
            Ok(())
        },
    },
    PeerKey {
        name: "max_links",
        apply: |value, peer| {
            peer.max_links = Some(
                whole_number(value, 1)
                    .map_err(|e| format!("{e} (a joining peer must open at least 1 link)"))?,
            );
            Ok(())
        },
    },
    PeerKey {
        name: "link_exponent",
        apply: |value, peer| {
            let exponent = number(value)?;
            // A Zipf law needs an exponent above 1 to be normalisable.
            if !(exponent.is_finite() && exponent > 1.0) {
                return Err(format!(
                    "{exponent:?} must be greater than 1.0 (a Zipf law needs an exponent above 1); use e.g. 2.0"
                ));
            }
            peer.link_exponent = Some(exponent);
            Ok(())
        },
    },
    PeerKey {
        name: "ping_interval",
        apply: |value, peer| {
            peer.ping_interval = Some(positive_duration(value)?);
            Ok(())
        },
    },
    PeerKey {
        name: "ping_misses",
        apply: |value, peer| {
            peer.ping_misses = Some(
                whole_number(value, 1)
                    .map_err(|e| format!("{e} (a neighbour must miss at least 1 ping)"))?,
            );
            Ok(())
        },
    },
    PeerKey {
        name: "icmp",
        apply: |value, peer| {
            let Kind::Bool(on) = value.kind else {
                return Err(format!(
                    "{} is not true or false; write icmp = true without quotes",
                    value.describe()
                ));
            };
            peer.icmp = Some(on);
            Ok(())
        },
    },
    PeerKey {
        name: "max_gossip_bytes",
        apply: |value, peer| {
            let (min, max) = MAX_GOSSIP_BYTES_RANGE.into_inner();
            let bytes = whole_number(value, min).map_err(|e| {
                format!("{e} (a message needs room for its timestamp and IP prefix)")
            })?;
            if bytes > max {
                return Err(format!(
                    "{bytes} is too large; use at most {max} (half of the 1 MiB frame limit)"
                ));
            }
            peer.max_gossip_bytes = Some(bytes);
            Ok(())
        },
    },
];

fn positive_duration(value: &Node) -> Result<Duration, String> {
    let duration = match &value.kind {
        Kind::Str(text) => parse_duration(text)?,
        Kind::Int(n) => return Err(format!("{n} has no unit; write e.g. \"{n}s\" or \"{n}ms\"")),
        _ => {
            return Err(format!(
                "{} is not a duration; write e.g. \"200ms\", \"5s\" or \"1m\"",
                value.describe()
            ))
        }
    };
    // A zero period would make the gossip timer spin (tokio refuses it outright).
    if duration.is_zero() {
        return Err(format!(
            "{} is zero; use a positive duration such as \"5s\"",
            value.describe()
        ));
    }
    Ok(duration)
}

fn whole_number(value: &Node, min: u32) -> Result<u32, String> {
    let Kind::Int(n) = value.kind else {
        return Err(format!(
            "{} is not a whole number; write a number from {min} to {} without quotes",
            value.describe(),
            u32::MAX
        ));
    };
    if n < i128::from(min) {
        return Err(format!("{n} is too small; use {min} or more"));
    }
    u32::try_from(n).map_err(|_| format!("{n} is too large; use at most {}", u32::MAX))
}

fn number(value: &Node) -> Result<f64, String> {
    match value.kind {
        Kind::Float(x) => Ok(x),
        // Integers are exact in f64 far beyond any sensible exponent.
        Kind::Int(n) => Ok(n as f64),
        _ => Err(format!(
            "{} is not a number; write e.g. 2.0 without quotes",
            value.describe()
        )),
    }
}

// ---------------------------------------------------------------------------
// Where we are: file, text and format, and how to turn positions into lines.

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Lines,
    Toml,
    Yaml,
}

impl Format {
    fn of(path: &Path) -> Format {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("toml") => Format::Toml,
            Some("yml" | "yaml") => Format::Yaml,
            _ => Format::Lines,
        }
    }

    /// How to write a seed in this format, for "not a seed address" errors.
    fn seed_hint(self) -> &'static str {
        match self {
            Format::Lines => "write IP,Port (e.g. 127.0.0.1,5010) or IP:PORT",
            Format::Toml => {
                "write \"IP:PORT\" (e.g. \"127.0.0.1:5010\") or { ip = \"127.0.0.1\", port = 5010 }"
            }
            Format::Yaml => {
                "write IP:PORT (e.g. 127.0.0.1:5010, IPv6 quoted as \"[::1]:5010\") or a map with ip: and port:"
            }
        }
    }

    fn seeds_example(self) -> &'static str {
        match self {
            Format::Lines => "one per line, e.g. 127.0.0.1,5010",
            Format::Toml => "e.g. seeds = [\"127.0.0.1:5010\", \"127.0.0.1:5011\"]",
            Format::Yaml => "e.g. seeds: [127.0.0.1:5010, 127.0.0.1:5011]",
        }
    }

    fn peer_section(self) -> &'static str {
        match self {
            Format::Yaml => "peer",
            _ => "[peer]",
        }
    }
}

struct Source<'a> {
    path: &'a Path,
    text: &'a str,
    format: Format,
}

impl Source<'_> {
    fn line_of(&self, pos: Pos) -> Option<usize> {
        match pos {
            Pos::Byte(offset) => {
                let offset = offset.min(self.text.len());
                let line = self.text.as_bytes()[..offset]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1;
                // Parsers report "unexpected end" just past the final newline;
                // point at the last real line instead of one nobody can see.
                Some(line.min(self.text.lines().count().max(1)))
            }
            Pos::Line(0) => None,
            Pos::Line(line) => usize::try_from(line).ok(),
        }
    }

    fn at_line(&self, line: usize, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line,
            message: message.into(),
        }
    }

    /// An error about `pos`, or about the whole file if the position is unknown
    /// (YAML aliases can lose it).
    fn at(&self, pos: Pos, message: impl Into<String>) -> ConfigError {
        match self.line_of(pos) {
            Some(line) => self.at_line(line, message),
            None => self.whole(message),
        }
    }

    fn whole(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::File {
            path: self.path.to_path_buf(),
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------------------
// Seeds, shared by all formats

/// Seeds collected so far, with the line each came from for duplicate reports.
#[derive(Default)]
struct SeedList {
    seeds: Vec<(SocketAddr, Option<usize>)>,
}

impl SeedList {
    fn push(
        &mut self,
        src: &Source,
        pos: Pos,
        addr: SocketAddr,
        text: &str,
    ) -> Result<(), ConfigError> {
        if let Some((_, first)) = self.seeds.iter().find(|(seen, _)| *seen == addr) {
            let first = first.map_or_else(|| "earlier".to_owned(), |l| format!("on line {l}"));
            return Err(src.at(
                pos,
                format!(
                    "\"{text}\" repeats seed {addr}, already listed {first}; list each seed once"
                ),
            ));
        }
        self.seeds.push((addr, src.line_of(pos)));
        Ok(())
    }

    fn finish(self, src: &Source) -> Result<Vec<SocketAddr>, ConfigError> {
        let count = self.seeds.len();
        if count < 2 {
            let listed = match count {
                0 => "no seeds listed".to_owned(),
                _ => "only 1 seed listed".to_owned(),
            };
            return Err(src.whole(format!(
                "{listed}; at least 2 seeds are needed ({})",
                src.format.seeds_example()
            )));
        }
        Ok(self.seeds.into_iter().map(|(addr, _)| addr).collect())
    }
}

/// Parses one seed written as `IP:PORT`, `[IPv6]:PORT` or `IP,Port`.
fn parse_seed(entry: &str, format: Format) -> Result<SocketAddr, String> {
    let not_a_seed = || format!("\"{entry}\" is not a seed address; {}", format.seed_hint());
    let (ip, port) = if entry.contains(',') {
        let (ip, port) = entry.split_once(',').ok_or_else(not_a_seed)?;
        if port.contains(',') {
            return Err(not_a_seed());
        }
        let ip = ip.trim();
        let ip = ip
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(ip);
        (ip, port.trim())
    } else if let Some(rest) = entry.strip_prefix('[') {
        match rest.split_once("]:") {
            Some(parts) => parts,
            None if rest.ends_with(']') => {
                return Err(format!("\"{entry}\" has no port; write e.g. {entry}:5010"))
            }
            None => return Err(not_a_seed()),
        }
    } else if entry.parse::<IpAddr>().is_ok() || is_localhost(entry) {
        let example = match entry.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("[{entry}]:5010"),
            _ => format!("{entry}:5010"),
        };
        return Err(format!("\"{entry}\" has no port; write e.g. {example}"));
    } else {
        let (ip, port) = entry.rsplit_once(':').ok_or_else(not_a_seed)?;
        if ip.parse::<std::net::Ipv6Addr>().is_ok() {
            return Err(format!(
                "\"{entry}\": an IPv6 address needs brackets before a port; write [{ip}]:{port} or {ip},{port}"
            ));
        }
        (ip, port)
    };
    let ip = check_ip(entry, ip)?;
    let port = check_port(entry, port)?;
    Ok(SocketAddr::new(ip, port))
}

/// `localhost`, read as this IP: the one name that means the same on every
/// machine, so it needs no lookup.
const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn is_localhost(text: &str) -> bool {
    text.eq_ignore_ascii_case("localhost")
}

fn check_ip(entry: &str, ip: &str) -> Result<IpAddr, String> {
    if is_localhost(ip) {
        return Ok(LOCALHOST);
    }
    let parsed: IpAddr = ip.parse().map_err(|_| {
        let looks_like_name = !ip.is_empty()
            && ip.chars().any(|c| c.is_ascii_alphabetic())
            && ip
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if looks_like_name {
            format!(
                "\"{entry}\": \"{ip}\" is a host name; use an IP address such as 127.0.0.1 (names other than localhost are not looked up)"
            )
        } else {
            format!("\"{entry}\": \"{ip}\" is not an IP address; use an IP address such as 127.0.0.1 or ::1")
        }
    })?;
    if parsed.is_unspecified() {
        return Err(format!(
            "\"{entry}\": {parsed} means every interface, and nobody can dial it; a node's address is its identity, so use the IP other machines reach it at (on one machine, 127.0.0.1)"
        ));
    }
    Ok(parsed)
}

fn check_port(entry: &str, port: &str) -> Result<u16, String> {
    let number: i128 = port.parse().map_err(|_| {
        format!("\"{entry}\": \"{port}\" is not a port number; use a port from 1 to 65535")
    })?;
    port_in_range(entry, number)
}

fn port_in_range(entry: &str, port: i128) -> Result<u16, String> {
    match u16::try_from(port) {
        Ok(0) => Err(format!(
            "\"{entry}\": port 0 cannot be connected to; use a port from 1 to 65535"
        )),
        Ok(port) => Ok(port),
        Err(_) => Err(format!(
            "\"{entry}\": port {port} is out of range; use a port from 1 to 65535"
        )),
    }
}

// ---------------------------------------------------------------------------
// Addresses on the command line

/// One word of a node's address on the command line, read with the same
/// rules and words as a seed in a config file, except that port 0 is
/// allowed (a peer on port 0 takes any free port; a seed refuses it later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressWord {
    /// `IP:PORT`, `[IPv6]:PORT` or `localhost:PORT`.
    Full(SocketAddr),
    /// An IP alone (or `localhost`): the port is the next word.
    Ip(IpAddr),
    /// A port alone (`gossipnet seed 1500`): the IP comes from the config.
    Port(u16),
}

/// Reads one address word of the command line; the error quotes it and
/// says how to write it.
pub fn parse_address_word(word: &str) -> Result<AddressWord, String> {
    let word = word.trim();
    let not_an_address = || {
        format!("\"{word}\" is not an address; write IP:PORT (e.g. 127.0.0.1:6001), IP PORT, or a port alone")
    };
    if !word.is_empty() && word.bytes().all(|b| b.is_ascii_digit()) {
        return parse_port_word(word, word).map(AddressWord::Port);
    }
    if let Some(rest) = word.strip_prefix('[') {
        if let Some(ip) = rest.strip_suffix(']') {
            return check_ip(word, ip).map(AddressWord::Ip);
        }
        let (ip, port) = rest.split_once("]:").ok_or_else(not_an_address)?;
        let ip = check_ip(word, ip)?;
        return Ok(AddressWord::Full(SocketAddr::new(
            ip,
            parse_port_word(word, port)?,
        )));
    }
    if word.parse::<IpAddr>().is_ok() || is_localhost(word) {
        return check_ip(word, word).map(AddressWord::Ip);
    }
    match word.rsplit_once(':') {
        Some((ip, port)) => {
            if ip.parse::<std::net::Ipv6Addr>().is_ok() {
                return Err(format!(
                    "\"{word}\": an IPv6 address needs brackets before a port; write [{ip}]:{port}"
                ));
            }
            let ip = check_ip(word, ip)?;
            Ok(AddressWord::Full(SocketAddr::new(
                ip,
                parse_port_word(word, port)?,
            )))
        }
        None if word.contains(',') => Err(not_an_address()),
        None => check_ip(word, word).map(AddressWord::Ip),
    }
}

/// Reads a port of the command line, from 0 to 65535; `entry` is the text
/// quoted in the error.
pub fn parse_port_word(entry: &str, port: &str) -> Result<u16, String> {
    let number: i128 = port.trim().parse().map_err(|_| {
        format!("\"{entry}\": \"{port}\" is not a port number; use a port from 1 to 65535")
    })?;
    u16::try_from(number).map_err(|_| {
        format!("\"{entry}\": port {number} is out of range; use a port from 1 to 65535")
    })
}

// ---------------------------------------------------------------------------
// Line format

fn parse_lines(src: &Source) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut seeds = SeedList::default();
    let mut seen_content = false;
    for (index, raw) in src.text.lines().enumerate() {
        let line = index + 1;
        let content = raw.split_once('#').map_or(raw, |(before, _)| before).trim();
        if content.is_empty() {
            continue;
        }
        // Gluing the fields around each comma lets "IP , Port" count as one
        // entry while whitespace still separates entries.
        let glued = content
            .split(',')
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(",");
        let first_content = !seen_content;
        seen_content = true;
        // Spreadsheets export a header row; rejecting it would be pedantic.
        if first_content && glued.eq_ignore_ascii_case("ip,port") {
            continue;
        }
        for entry in glued.split_whitespace() {
            let addr = parse_seed(entry, src.format).map_err(|m| src.at_line(line, m))?;
            seeds.push(src, Pos::Line(line as u64), addr, entry)?;
        }
    }
    seeds.finish(src)
}

// ---------------------------------------------------------------------------
// TOML and YAML: both are first read into a format-neutral tree that keeps
// each value's position, then checked by one schema walk. That keeps the
// messages identical across formats and gives every semantic error a line.

#[derive(Debug, Clone, Copy)]
enum Pos {
    /// Byte offset into the text (TOML reports spans).
    Byte(usize),
    /// 1-based line, 0 = unknown (YAML reports lines).
    Line(u64),
}

#[derive(Debug)]
struct Node {
    pos: Pos,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The value as the user should recognise it in a message.
    fn describe(&self) -> String {
        match &self.kind {
            Kind::Null => "an empty value".to_owned(),
            Kind::Bool(b) => b.to_string(),
            Kind::Int(n) => n.to_string(),
            Kind::Float(x) => format!("{x:?}"),
            Kind::Str(s) => format!("{s:?}"),
            Kind::Seq(_) => "a list".to_owned(),
            Kind::Map(_) => "a table".to_owned(),
        }
    }
}

/// Deserialises any value into `Kind`, reading children as `N` (a
/// format-specific spanned node) so that every child keeps its position.
struct KindOf<N>(Kind, PhantomData<N>);

impl<'de, N: Deserialize<'de> + Into<Node>> Deserialize<'de> for KindOf<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor::<N>(PhantomData))
            .map(|kind| KindOf(kind, PhantomData))
    }
}

struct KindVisitor<N>(PhantomData<N>);

impl<'de, N: Deserialize<'de> + Into<Node>> Visitor<'de> for KindVisitor<N> {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number, boolean, list or table")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Kind, E> {
        Ok(Kind::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Kind, E> {
        Ok(Kind::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Kind, E> {
        Ok(Kind::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Kind, E> {
        Ok(Kind::Int(v))
    }
    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Kind, E> {
        i128::try_from(v)
            .map(Kind::Int)
            .map_err(|_| E::custom(format!("{v} is too large")))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Kind, E> {
        Ok(Kind::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Kind, E> {
        Ok(Kind::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_none<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<N>()? {
            items.push(item.into());
        }
        Ok(Kind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry::<N, N>()? {
            entries.push((key.into(), value.into()));
        }
        Ok(Kind::Map(entries))
    }
}

struct TomlNode(Node);

impl From<TomlNode> for Node {
    fn from(n: TomlNode) -> Node {
        n.0
    }
}

impl<'de> Deserialize<'de> for TomlNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = toml::Spanned::<KindOf<TomlNode>>::deserialize(d)?;
        let pos = Pos::Byte(spanned.span().start);
        Ok(TomlNode(Node {
            pos,
            kind: spanned.into_inner().0,
        }))
    }
}

struct YamlNode(Node);

impl From<YamlNode> for Node {
    fn from(n: YamlNode) -> Node {
        n.0
    }
}

impl<'de> Deserialize<'de> for YamlNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<KindOf<YamlNode>>::deserialize(d)?;
        Ok(YamlNode(Node {
            pos: Pos::Line(spanned.referenced.line()),
            kind: spanned.value.0,
        }))
    }
}

fn toml_tree(src: &Source) -> Result<Node, ConfigError> {
    toml::from_str::<TomlNode>(src.text)
        .map(Node::from)
        .map_err(|e| {
            // toml hands datetimes to visitors as a private marker map.
            let message = if e.message().contains("$__toml_private_datetime") {
                "dates and times are not valid here; quote the value or remove it".to_owned()
            } else {
                e.message().trim_end().to_owned()
            };
            let message = format!("invalid TOML: {message}; fix the syntax on this line");
            match e.span() {
                Some(span) => src.at(Pos::Byte(span.start), message),
                None => src.whole(message),
            }
        })
}

fn yaml_tree(src: &Source) -> Result<Node, ConfigError> {
    use serde_saphyr::MessageFormatter as _;
    match serde_saphyr::from_str::<Option<YamlNode>>(src.text) {
        Ok(Some(node)) => Ok(node.into()),
        // A file of only comments is a file with no seeds, not a syntax error.
        Ok(None) => Ok(Node {
            pos: Pos::Line(1),
            kind: Kind::Null,
        }),
        Err(e) => {
            let plain = e.without_snippet();
            let text = serde_saphyr::UserMessageFormatter.format_message(plain);
            let line = plain.location().map_or(0, |l| l.line());
            // An unquoted "[::1]:5010" reads as a YAML list, and the parser's
            // complaint about it says nothing of addresses.
            let offending = usize::try_from(line)
                .ok()
                .and_then(|l| src.text.lines().nth(l.checked_sub(1)?));
            let hint = match offending {
                Some(l) if l.contains('[') && l.contains("]:") => {
                    " (quote IPv6 seeds, e.g. - \"[::1]:5010\")"
                }
                _ => "",
            };
            let message = format!(
                "invalid YAML: {}; fix the syntax on this line{hint}",
                text.trim_end()
            );
            Err(src.at(Pos::Line(line), message))
        }
    }
}

/// Checks the tree against the schema: `seeds` (required) and `peer`.
/// What a file sets; the line format sets only the seeds.
#[derive(Default)]
struct FileSettings {
    seeds: Vec<SocketAddr>,
    peer: PeerOverrides,
    network_key: Option<PathBuf>,
    max_peers_per_ip: Option<u32>,
}

fn parse_tree(src: &Source, root: Node) -> Result<FileSettings, ConfigError> {
    let entries = match root.kind {
        Kind::Map(entries) => entries,
        Kind::Null => Vec::new(),
        _ => {
            return Err(src.at(
                root.pos,
                format!(
                    "the file must be a {} with a seeds list ({})",
                    if src.format == Format::Yaml {
                        "map"
                    } else {
                        "table"
                    },
                    src.format.seeds_example()
                ),
            ))
        }
    };
    let mut seeds = SeedList::default();
    let mut peer = PeerOverrides::default();
    let mut network_key = None;
    let mut max_peers_per_ip = None;
    for (key, value) in entries {
        match key_name(src, &key)? {
            "seeds" => parse_seed_list(src, value, &mut seeds)?,
            "peer" => parse_peer(src, value, &mut peer)?,
            "network_key" => match value.kind {
                Kind::Str(file) if !file.trim().is_empty() => network_key = Some(PathBuf::from(file)),
                _ => {
                    return Err(src.at(
                        value.pos,
                        format!(
                            "network_key is {}, not a file name; write network_key = \"network.key\" (made by `gossipnet keygen`)",
                            value.describe()
                        ),
                    ))
                }
            },
            "max_peers_per_ip" => match value.kind {
                Kind::Int(n) if n >= 1 && n <= u32::MAX as i128 => max_peers_per_ip = Some(n as u32),
                _ => {
                    return Err(src.at(
                        value.pos,
                        format!(
                            "max_peers_per_ip is {}; write a whole number of at least 1, e.g. max_peers_per_ip = 16, or leave it out for no cap",
                            value.describe()
                        ),
                    ))
                }
            },
            other => {
                return Err(src.at(
                    key.pos,
                    format!("unknown key \"{other}\"; known keys: seeds, peer, network_key, max_peers_per_ip"),
                ))
            }
        }
    }
    Ok(FileSettings {
        seeds: seeds.finish(src)?,
        peer,
        network_key,
        max_peers_per_ip,
    })
}

fn key_name<'n>(src: &Source, key: &'n Node) -> Result<&'n str, ConfigError> {
    match &key.kind {
        Kind::Str(name) => Ok(name),
        _ => Err(src.at(
            key.pos,
            format!(
                "{} is not a valid key; keys are names such as seeds",
                key.describe()
            ),
        )),
    }
}

fn parse_seed_list(src: &Source, value: Node, seeds: &mut SeedList) -> Result<(), ConfigError> {
    let items = match value.kind {
        Kind::Seq(items) => items,
        Kind::Null => return Ok(()),
        _ => {
            return Err(src.at(
                value.pos,
                format!(
                    "seeds is {}, not a list; {}",
                    value.describe(),
                    src.format.seeds_example()
                ),
            ))
        }
    };
    for item in items {
        let (addr, text) = match &item.kind {
            Kind::Str(text) => {
                let addr = parse_seed(text.trim(), src.format).map_err(|m| src.at(item.pos, m))?;
                (addr, text.trim().to_owned())
            }
            Kind::Map(fields) => seed_from_table(src, &item, fields)?,
            _ => {
                return Err(src.at(
                    item.pos,
                    format!(
                        "{} is not a seed address; {}",
                        item.describe(),
                        src.format.seed_hint()
                    ),
                ))
            }
        };
        seeds.push(src, item.pos, addr, &text)?;
    }
    Ok(())
}

fn seed_from_table(
    src: &Source,
    table: &Node,
    fields: &[(Node, Node)],
) -> Result<(SocketAddr, String), ConfigError> {
    let mut ip = None;
    let mut port = None;
    for (key, value) in fields {
        match key_name(src, key)? {
            "ip" => ip = Some(value),
            "port" => port = Some(value),
            other => {
                return Err(src.at(
                    key.pos,
                    format!("unknown key \"{other}\" in a seed; known keys: ip, port"),
                ))
            }
        }
    }
    let (Some(ip), Some(port)) = (ip, port) else {
        return Err(src.at(
            table.pos,
            format!(
                "a seed table needs both ip and port; {}",
                src.format.seed_hint()
            ),
        ));
    };
    let Kind::Str(ip_text) = &ip.kind else {
        return Err(src.at(
            ip.pos,
            format!(
                "ip {} is not an IP address; write it as a string such as \"127.0.0.1\"",
                ip.describe()
            ),
        ));
    };
    let Kind::Int(port_number) = port.kind else {
        return Err(src.at(
            port.pos,
            format!(
                "port {} is not a port number; write a number from 1 to 65535 without quotes",
                port.describe()
            ),
        ));
    };
    let ip_text = ip_text.trim();
    let entry = format!("ip {ip_text}, port {port_number}");
    let addr_ip = check_ip(&entry, ip_text).map_err(|m| src.at(ip.pos, m))?;
    let addr_port = port_in_range(&entry, port_number).map_err(|m| src.at(port.pos, m))?;
    Ok((SocketAddr::new(addr_ip, addr_port), entry))
}

fn parse_peer(src: &Source, value: Node, peer: &mut PeerOverrides) -> Result<(), ConfigError> {
    let entries = match value.kind {
        Kind::Map(entries) => entries,
        Kind::Null => return Ok(()),
        _ => {
            return Err(src.at(
                value.pos,
                format!(
                    "peer is {}, not a section of settings; write it as {} followed by key = value lines",
                    value.describe(),
                    src.format.peer_section()
                ),
            ))
        }
    };
    for (key, value) in entries {
        let name = key_name(src, &key)?;
        let Some(setting) = PEER_KEYS.iter().find(|k| k.name == name) else {
            let known: Vec<&str> = PEER_KEYS.iter().map(|k| k.name).collect();
            return Err(src.at(
                key.pos,
                format!(
                    "unknown key \"{name}\" in {}; known keys: {}",
                    src.format.peer_section(),
                    known.join(", ")
                ),
            ));
        };
        (setting.apply)(&value, peer).map_err(|m| src.at(value.pos, format!("{name}: {m}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn ok(name: &str, text: &str) -> Config {
        parse(Path::new(name), text).unwrap_or_else(|e| panic!("{name} should parse: {e}"))
    }

    /// Parses text that must fail and returns (line, message); line is None
    /// for errors about the whole file. Every message must name the file.
    fn fail(name: &str, text: &str) -> (Option<usize>, String) {
        let err = parse(Path::new(name), text).expect_err("should be rejected");
        let message = err.to_string();
        assert!(
            message.starts_with(name),
            "message should start with the file name {name}: {message}"
        );
        let line = match err {
            ConfigError::Invalid { line, .. } => {
                assert!(
                    message.starts_with(&format!("{name}:{line}: ")),
                    "{message}"
                );
                Some(line)
            }
            ConfigError::File { .. } => None,
            other => panic!("unexpected error kind: {other:?}"),
        };
        (line, message)
    }

    fn three() -> Vec<SocketAddr> {
        vec![
            addr("127.0.0.1:5010"),
            addr("127.0.0.1:5011"),
            addr("127.0.0.1:5012"),
        ]
    }

    #[test]
    fn csv_lines_with_spaces_around_fields_parse() {
        let config = ok(
            "config.csv",
            "127.0.0.1,5010\n 127.0.0.1 , 5011 \n127.0.0.1,\t5012\n",
        );
        assert_eq!(config.seeds, three());
        assert_eq!(config.peer, PeerOverrides::default());
        assert_eq!(config.path, PathBuf::from("config.csv"));
    }

    #[test]
    fn colon_lines_parse() {
        let config = ok(
            "config.txt",
            "127.0.0.1:5010\n127.0.0.1:5011\n127.0.0.1:5012",
        );
        assert_eq!(config.seeds, three());
    }

    #[test]
    fn several_whitespace_separated_entries_on_one_line_parse() {
        let config = ok(
            "config.txt",
            "127.0.0.1:5010 127.0.0.1:5011\t127.0.0.1:5012\n",
        );
        assert_eq!(config.seeds, three());
    }

    #[test]
    fn comments_blank_lines_and_both_forms_mix_in_one_line_file() {
        let text = "# seeds for the lab\n\n127.0.0.1,5010   # first\n\n  \n127.0.0.1:5011 # second\r\n# done\n127.0.0.1, 5012 127.0.0.1:5013\n";
        let config = ok("config.csv", text);
        let mut expected = three();
        expected.push(addr("127.0.0.1:5013"));
        assert_eq!(config.seeds, expected);
    }

    #[test]
    fn a_header_row_in_a_csv_file_is_skipped() {
        let config = ok("config.csv", "IP,Port\n127.0.0.1,5010\n127.0.0.1,5011\n");
        assert_eq!(config.seeds.len(), 2);
    }

    #[test]
    fn ipv6_is_accepted_bracketed_with_colon_and_bare_with_comma() {
        let config = ok("config.csv", "[::1]:5010\n::1,5011\n[fe80::2],5012\n");
        assert_eq!(
            config.seeds,
            vec![
                addr("[::1]:5010"),
                addr("[::1]:5011"),
                addr("[fe80::2]:5012")
            ]
        );
    }

    #[test]
    fn ipv6_with_port_but_without_brackets_is_rejected_with_the_bracketed_form() {
        let (line, message) = fail("config.txt", "127.0.0.1:5010\nfe80::2:x:5010\n");
        assert_eq!(line, Some(2));
        assert!(message.contains("\"fe80::2:x:5010\""), "{message}");
        let (line, message) = fail("config.txt", "127.0.0.1:5010\n::1\n");
        assert_eq!(line, Some(2));
        assert!(
            message.contains("has no port") && message.contains("[::1]:5010"),
            "{message}"
        );
    }

    #[test]
    fn toml_seed_strings_parse_and_leave_peer_settings_unset() {
        let config = ok(
            "config.toml",
            "# lab\nseeds = [\"127.0.0.1:5010\", \"127.0.0.1:5011\", \"[::1]:5012\"]\n",
        );
        assert_eq!(
            config.seeds,
            vec![
                addr("127.0.0.1:5010"),
                addr("127.0.0.1:5011"),
                addr("[::1]:5012")
            ]
        );
        assert_eq!(config.peer, PeerOverrides::default());
    }

    #[test]
    fn toml_seed_tables_parse_alongside_strings() {
        let text = "seeds = [\n  { ip = \"127.0.0.1\", port = 5010 },\n  { ip = \"::1\", port = 5011 },\n  \"127.0.0.1:5012\",\n]\n";
        let config = ok("config.toml", text);
        assert_eq!(
            config.seeds,
            vec![
                addr("127.0.0.1:5010"),
                addr("[::1]:5011"),
                addr("127.0.0.1:5012")
            ]
        );
    }

    #[test]
    fn yaml_seed_strings_parse() {
        let text =
            "# lab\nseeds:\n  - 127.0.0.1:5010\n  - \"127.0.0.1:5011\"\n\n  - '[::1]:5012'\n";
        let config = ok("config.yml", text);
        assert_eq!(
            config.seeds,
            vec![
                addr("127.0.0.1:5010"),
                addr("127.0.0.1:5011"),
                addr("[::1]:5012")
            ]
        );
        assert_eq!(config.peer, PeerOverrides::default());
    }

    #[test]
    fn yaml_seed_maps_parse() {
        let text = "seeds:\n  - ip: 127.0.0.1\n    port: 5010\n  - ip: 127.0.0.1\n    port: 5011\n  - {ip: 127.0.0.1, port: 5012}\n";
        assert_eq!(ok("config.yaml", text).seeds, three());
    }

    #[test]
    fn toml_peer_settings_are_read_and_absent_keys_stay_unset() {
        let text = "seeds = [\"127.0.0.1:5010\", \"127.0.0.1:5011\"]\n[peer]\ngossip_interval = \"200ms\"\ngossip_count = 0\nlink_exponent = 3\n";
        let config = ok("config.toml", text);
        assert_eq!(
            config.peer,
            PeerOverrides {
                gossip_interval: Some(Duration::from_millis(200)),
                gossip_count: Some(0),
                max_links: None,
                link_exponent: Some(3.0),
                ..PeerOverrides::default()
            }
        );
    }

    #[test]
    fn yaml_peer_settings_are_read() {
        let text = "seeds: [127.0.0.1:5010, 127.0.0.1:5011]\npeer:\n  gossip_interval: 1m30s\n  gossip_count: 3\n  max_links: 4\n  link_exponent: 2.5\n  ping_interval: 500ms\n  ping_misses: 2\n";
        let config = ok("config.yml", text);
        assert_eq!(
            config.peer,
            PeerOverrides {
                gossip_interval: Some(Duration::from_secs(90)),
                gossip_count: Some(3),
                max_links: Some(4),
                link_exponent: Some(2.5),
                ping_interval: Some(Duration::from_millis(500)),
                ping_misses: Some(2),
                icmp: None,
                max_gossip_bytes: None,
            }
        );
    }

    #[test]
    fn example_config_file_parses_with_three_seeds_and_the_default_settings() {
        let config = ok(
            "config.example.toml",
            include_str!("../config.example.toml"),
        );
        assert_eq!(config.seeds, three());
        assert_eq!(
            config.peer,
            PeerOverrides {
                gossip_interval: Some(Duration::from_secs(5)),
                gossip_count: Some(10),
                max_links: Some(8),
                link_exponent: Some(2.0),
                ping_interval: Some(Duration::from_secs(13)),
                ping_misses: Some(3),
                icmp: Some(false),
                max_gossip_bytes: Some(65536),
            }
        );
        // The example documents the defaults; they must not drift apart.
        assert_eq!(
            config.peer.apply_to(PeerSettings::default()),
            PeerSettings::default()
        );
    }

    #[test]
    fn bad_line_is_reported_with_its_line_number_quoted_text_and_both_forms() {
        let (line, message) = fail(
            "config.csv",
            "127.0.0.1,5010\n# comment\n127.0.0.1;5010\n127.0.0.1,5011\n",
        );
        assert_eq!(line, Some(3));
        assert_eq!(
            message,
            "config.csv:3: \"127.0.0.1;5010\" is not a seed address; write IP,Port (e.g. 127.0.0.1,5010) or IP:PORT"
        );
    }

    #[test]
    fn bad_port_is_reported_with_the_valid_range() {
        let (line, message) = fail("config.txt", "127.0.0.1:5010\n127.0.0.1:99999\n");
        assert_eq!(line, Some(2));
        assert!(message.contains("\"127.0.0.1:99999\""), "{message}");
        assert!(message.contains("1 to 65535"), "{message}");
        let (line, message) = fail("config.csv", "127.0.0.1,5010\n\n127.0.0.1,http\n");
        assert_eq!(line, Some(3));
        assert!(
            message.contains("\"http\" is not a port number"),
            "{message}"
        );
    }

    #[test]
    fn port_zero_is_rejected_in_every_format() {
        let (line, message) = fail("config.csv", "127.0.0.1,0\n127.0.0.1,5011\n");
        assert_eq!(line, Some(1));
        assert!(message.contains("port 0"), "{message}");
        let text = "seeds = [\n  \"127.0.0.1:5010\",\n  { ip = \"127.0.0.1\", port = 0 },\n]\n";
        let (line, message) = fail("config.toml", text);
        assert_eq!(line, Some(3));
        assert!(message.contains("port 0"), "{message}");
        let (line, _) = fail(
            "config.yml",
            "seeds:\n  - 127.0.0.1:5010\n  - 127.0.0.1:0\n",
        );
        assert_eq!(line, Some(3));
    }

    #[test]
    fn hostname_is_rejected_with_a_hint_to_use_an_ip_address() {
        let (line, message) = fail("config.txt", "127.0.0.1:5010\nseed-2.lan:5011\n");
        assert_eq!(line, Some(2));
        assert!(
            message.contains("\"seed-2.lan\" is a host name"),
            "{message}"
        );
        assert!(message.contains("use an IP address"), "{message}");
        let text = "seeds:\n  - 127.0.0.1:5010\n  - ip: seed.example.org\n    port: 5011\n";
        let (line, message) = fail("config.yml", text);
        assert_eq!(line, Some(3));
        assert!(message.contains("use an IP address"), "{message}");
    }

    #[test]
    fn localhost_is_read_as_127_0_0_1_in_every_format() {
        let want = vec![addr("127.0.0.1:5010"), addr("127.0.0.1:5011")];
        assert_eq!(
            ok("config.txt", "localhost:5010 LocalHost:5011\n").seeds,
            want
        );
        assert_eq!(
            ok("config.csv", "localhost,5010\n127.0.0.1,5011\n").seeds,
            want
        );
        let text = "seeds = [{ ip = \"localhost\", port = 5010 }, \"127.0.0.1:5011\"]\n";
        assert_eq!(ok("config.toml", text).seeds, want);
        let (line, message) = fail("config.txt", "127.0.0.1:5010 localhost:5010\n");
        assert_eq!(line, Some(1));
        assert!(message.contains("repeats seed 127.0.0.1:5010"), "{message}");
    }

    #[test]
    fn an_unspecified_address_is_refused_like_on_the_command_line() {
        for (name, text, line) in [
            ("config.txt", "127.0.0.1:5010\n0.0.0.0:5011\n", 2),
            ("config.csv", "::,5010\n127.0.0.1,5011\n", 1),
            ("config.txt", "[::]:5010 127.0.0.1:5011\n", 1),
            (
                "config.yml",
                "seeds:\n  - 127.0.0.1:5010\n  - ip: 0.0.0.0\n    port: 5011\n",
                3,
            ),
        ] {
            let (got, message) = fail(name, text);
            assert_eq!(got, Some(line), "{name}: {message}");
            assert!(message.contains("every interface"), "{name}: {message}");
        }
        assert!(matches!(
            parse_address_word("0.0.0.0:6001"),
            Err(message) if message.contains("every interface")
        ));
    }

    #[test]
    fn command_line_address_words_are_read_like_config_entries() {
        use AddressWord::*;
        assert_eq!(
            parse_address_word("127.0.0.1:6001"),
            Ok(Full(addr("127.0.0.1:6001")))
        );
        assert_eq!(
            parse_address_word("localhost:0"),
            Ok(Full(addr("127.0.0.1:0")))
        );
        assert_eq!(
            parse_address_word("[::1]:6001"),
            Ok(Full(addr("[::1]:6001")))
        );
        assert_eq!(parse_address_word("::1"), Ok(Ip("::1".parse().unwrap())));
        assert_eq!(parse_address_word("[::1]"), Ok(Ip("::1".parse().unwrap())));
        assert_eq!(
            parse_address_word("localhost"),
            Ok(Ip("127.0.0.1".parse().unwrap()))
        );
        assert_eq!(parse_address_word("1500"), Ok(Port(1500)));
        for (word, says) in [
            (
                "70000",
                "port 70000 is out of range; use a port from 1 to 65535",
            ),
            ("127.0.0.1:70000", "port 70000 is out of range"),
            ("127.0.0.1:x", "\"x\" is not a port number"),
            (
                "fe80::1:x",
                "needs brackets before a port; write [fe80::1]:x",
            ),
            ("host.lan:5010", "\"host.lan\" is a host name"),
            ("1.2.3.4,5", "is not an address"),
        ] {
            match parse_address_word(word) {
                Err(message) => assert!(message.contains(says), "{word}: {message}"),
                Ok(got) => panic!("{word} read as {got:?}"),
            }
        }
    }

    #[test]
    fn duplicate_seed_is_reported_on_the_line_of_the_second_occurrence() {
        let (line, message) = fail(
            "config.csv",
            "127.0.0.1,5010\n127.0.0.1,5011\n\n127.0.0.1:5010\n",
        );
        assert_eq!(line, Some(4));
        assert!(message.contains("already listed on line 1"), "{message}");
        let (line, _) = fail(
            "config.txt",
            "127.0.0.1:5010 127.0.0.1:5011 127.0.0.1:5010\n",
        );
        assert_eq!(line, Some(1));
    }

    #[test]
    fn duplicate_seed_in_toml_and_yaml_is_reported_on_its_own_line() {
        let text = "seeds = [\n  \"127.0.0.1:5010\",\n  \"127.0.0.1:5011\",\n  { ip = \"127.0.0.1\", port = 5010 },\n]\n";
        let (line, message) = fail("config.toml", text);
        assert_eq!(line, Some(4));
        assert!(message.contains("already listed on line 2"), "{message}");
        let text = "seeds:\n  - 127.0.0.1:5010\n  - 127.0.0.1:5010\n";
        let (line, _) = fail("config.yml", text);
        assert_eq!(line, Some(3));
    }

    #[test]
    fn one_seed_is_too_few_and_the_error_names_the_file() {
        let (line, message) = fail("config.txt", "127.0.0.1:5010\n");
        assert_eq!(line, None);
        assert!(
            message.starts_with("config.txt: only 1 seed listed; at least 2 seeds are needed"),
            "{message}"
        );
        let (line, message) = fail("config.toml", "seeds = [\"127.0.0.1:5010\"]\n");
        assert_eq!(line, None);
        assert!(message.contains("only 1 seed"), "{message}");
    }

    #[test]
    fn zero_seeds_is_too_few_in_every_format() {
        for (name, text) in [
            ("config.csv", ""),
            ("config.txt", "# nothing yet\n\n"),
            ("config.toml", "[peer]\ngossip_count = 1\n"),
            ("config.toml", "seeds = []\n"),
            ("config.yml", "# nothing yet\n"),
            ("config.yml", "seeds:\n"),
        ] {
            let (line, message) = fail(name, text);
            assert_eq!(line, None, "{name}: {text:?}");
            assert!(message.contains("no seeds listed; at least 2"), "{message}");
        }
    }

    #[test]
    fn toml_syntax_error_names_its_line() {
        let text =
            "# lab\nseeds = [\"127.0.0.1:5010\", \"127.0.0.1:5011\"]\n[peer]\ngossip_count = = 3\n";
        let (line, message) = fail("config.toml", text);
        assert_eq!(line, Some(4));
        assert!(message.contains("invalid TOML"), "{message}");
    }

    #[test]
    fn toml_unknown_key_in_peer_names_its_line_and_the_known_keys() {
        let text =
            "seeds = [\"127.0.0.1:5010\", \"127.0.0.1:5011\"]\n[peer]\ngossip_intervall = \"5s\"\n";
        let (line, message) = fail("config.toml", text);
        assert_eq!(line, Some(3));
        assert_eq!(
            message,
            "config.toml:3: unknown key \"gossip_intervall\" in [peer]; known keys: gossip_interval, gossip_count, max_links, link_exponent, ping_interval, ping_misses, icmp, max_gossip_bytes"
        );
    }

    #[test]
    fn toml_unknown_top_level_key_and_unknown_seed_table_key_name_their_lines() {
        let text =
            "seeds = [\"127.0.0.1:5010\", \"127.0.0.1:5011\"]\n\nseed = [\"127.0.0.1:5012\"]\n";
        let (line, message) = fail("config.toml", text);
        assert_eq!(line, Some(3));
        assert!(
            message.contains("unknown key \"seed\"; known keys: seeds, peer"),
            "{message}"
        );
        let text =
            "seeds = [\n  \"127.0.0.1:5010\",\n  { host = \"127.0.0.1\", port = 5011 },\n]\n";
        let (line, message) = fail("config.toml", text);
        assert_eq!(line, Some(3));
        assert!(message.contains("unknown key \"host\""), "{message}");
    }

    #[test]
    fn toml_datetime_value_is_explained() {
        let text = "seeds = [\"127.0.0.1:5010\", \"127.0.0.1:5011\"]\n[peer]\ngossip_interval = 1979-05-27\n";
        let (line, message) = fail("config.toml", text);
        assert_eq!(line, Some(3));
        assert!(message.contains("dates and times"), "{message}");
    }

    #[test]
    fn yaml_syntax_error_names_its_line() {
        let text = "seeds:\n  - 127.0.0.1:5010\n  - 127.0.0.1:5011\npeer:\n  gossip_count: [3\n";
        let (line, message) = fail("config.yml", text);
        assert_eq!(line, Some(5));
        assert!(message.contains("invalid YAML"), "{message}");
        let text = "seeds:\n  - 127.0.0.1:5010\n  - 127.0.0.1:5011\npeer: gossip_count: 3\n";
        let (line, message) = fail("config.yml", text);
        assert_eq!(line, Some(4));
        assert!(message.contains("invalid YAML"), "{message}");
    }

    #[test]
    fn unquoted_ipv6_seed_in_yaml_gets_a_quoting_hint() {
        let (line, message) = fail("config.yml", "seeds:\n  - [::1]:5010\n  - 127.0.0.1:5011\n");
        assert_eq!(line, Some(2));
        assert!(message.contains("quote IPv6 seeds"), "{message}");
    }

    #[test]
    fn yaml_unknown_key_names_its_line() {
        let text = "seeds:\n  - 127.0.0.1:5010\n  - 127.0.0.1:5011\npeer:\n  gossip_count: 3\n  maxlinks: 4\n";
        let (line, message) = fail("config.yml", text);
        assert_eq!(line, Some(6));
        assert!(
            message.contains("unknown key \"maxlinks\" in peer;"),
            "{message}"
        );
        assert!(message.contains("max_links"), "{message}");
    }

    #[test]
    fn bad_duration_names_its_line_and_shows_examples() {
        let text = "seeds = [\"127.0.0.1:5010\", \"127.0.0.1:5011\"]\n[peer]\ngossip_count = 3\ngossip_interval = \"5 parsecs\"\n";
        let (line, message) = fail("config.toml", text);
        assert_eq!(line, Some(4));
        assert!(
            message.contains("gossip_interval: \"5 parsecs\" is not a duration"),
            "{message}"
        );
        assert!(message.contains("\"5s\""), "{message}");
        let text = "seeds: [127.0.0.1:5010, 127.0.0.1:5011]\npeer:\n  gossip_interval: 5\n";
        let (line, message) = fail("config.yml", text);
        assert_eq!(line, Some(3));
        assert!(message.contains("has no unit"), "{message}");
    }

    #[test]
    fn zero_gossip_interval_is_rejected() {
        let text =
            "seeds = [\"127.0.0.1:5010\", \"127.0.0.1:5011\"]\n[peer]\ngossip_interval = \"0s\"\n";
        let (line, message) = fail("config.toml", text);
        assert_eq!(line, Some(3));
        assert!(message.contains("zero"), "{message}");
    }

    #[test]
    fn max_links_zero_is_rejected() {
        let text = "seeds = [\"127.0.0.1:5010\", \"127.0.0.1:5011\"]\n[peer]\nmax_links = 0\n";
        let (line, message) = fail("config.toml", text);
        assert_eq!(line, Some(3));
        assert!(
            message.contains("max_links: 0 is too small; use 1 or more"),
            "{message}"
        );
    }

    #[test]
    fn link_exponent_of_one_is_rejected() {
        let text = "seeds: [127.0.0.1:5010, 127.0.0.1:5011]\npeer:\n  max_links: 3\n  link_exponent: 1.0\n";
        let (line, message) = fail("config.yml", text);
        assert_eq!(line, Some(4));
        assert!(
            message.contains("link_exponent: 1.0 must be greater than 1.0"),
            "{message}"
        );
    }

    #[test]
    fn wrongly_typed_settings_are_rejected_with_the_value_quoted() {
        let text =
            "seeds = [\"127.0.0.1:5010\", \"127.0.0.1:5011\"]\n[peer]\ngossip_count = \"10\"\n";
        let (line, message) = fail("config.toml", text);
        assert_eq!(line, Some(3));
        assert!(
            message.contains("gossip_count: \"10\" is not a whole number"),
            "{message}"
        );
        let text = "seeds = [\"127.0.0.1:5010\", \"127.0.0.1:5011\"]\n[peer]\ngossip_count = -1\n";
        let (line, _) = fail("config.toml", text);
        assert_eq!(line, Some(3));
    }

    #[test]
    fn missing_file_is_a_read_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.csv");
        let err = load(&path).expect_err("missing file");
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("--config"), "{message}");
    }

    #[test]
    fn load_reads_the_file_and_keeps_the_path_as_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seeds.txt");
        std::fs::write(&path, "127.0.0.1:5010 127.0.0.1:5011\n").unwrap();
        let config = load(&path).unwrap();
        assert_eq!(config.path, path);
        assert_eq!(config.seeds.len(), 2);
    }

    #[test]
    fn find_default_takes_csv_then_txt_then_toml_then_yml_then_yaml() {
        let dir = tempfile::tempdir().unwrap();
        let mut present = vec![];
        for name in [
            "config.yaml",
            "config.yml",
            "config.toml",
            "config.txt",
            "config.csv",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
            present.push(name);
            assert_eq!(find_default(dir.path()).unwrap(), dir.path().join(name));
        }
        assert_eq!(present.len(), 5);
    }

    #[test]
    fn find_default_without_any_file_lists_the_names_and_suggests_config() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_default(dir.path()).expect_err("empty dir");
        assert!(matches!(err, ConfigError::NoDefault { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
        assert!(
            message.contains("config.csv, config.txt, config.toml, config.yml, config.yaml"),
            "{message}"
        );
        assert!(message.contains("--config FILE"), "{message}");
    }

    #[test]
    fn parse_duration_accepts_human_forms_and_explains_nonsense() {
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration(" 5s "), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        let message = parse_duration("soon").unwrap_err();
        assert!(
            message.starts_with("\"soon\" is not a duration"),
            "{message}"
        );
        assert!(message.contains("\"5s\""), "{message}");
    }

    #[test]
    fn overrides_layer_apply_and_survive_a_toml_round_trip() {
        let cli = PeerOverrides {
            gossip_interval: Some(Duration::from_millis(200)),
            ..PeerOverrides::default()
        };
        let file = PeerOverrides {
            gossip_interval: Some(Duration::from_secs(9)),
            gossip_count: Some(4),
            max_links: Some(3),
            link_exponent: Some(2.5),
            ping_interval: Some(Duration::from_millis(500)),
            ping_misses: Some(4),
            icmp: Some(true),
            max_gossip_bytes: Some(1000),
        };
        let merged = cli.or(file);
        assert_eq!(merged.gossip_interval, Some(Duration::from_millis(200)));
        assert_eq!(merged.gossip_count, Some(4));
        let settings = merged.apply_to(PeerSettings::default());
        assert_eq!(settings.max_links.get(), 3);
        assert_eq!(settings.link_exponent, 2.5);
        assert_eq!(settings.max_gossip_bytes, 1000);
        let text = format!(
            "seeds = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n[peer]\n{}",
            merged.to_toml()
        );
        let back = parse(Path::new("x.toml"), &text).unwrap();
        assert_eq!(back.peer, merged);
    }

    #[test]
    fn network_key_is_a_file_next_to_the_config_unless_absolute() {
        let seeds = "seeds = [\"127.0.0.1:5010\", \"127.0.0.1:5011\"]\n";
        let relative = ok(
            "conf/net.toml",
            &format!("{seeds}network_key = \"keys/n.key\"\n"),
        );
        assert_eq!(relative.network_key, Some(PathBuf::from("conf/keys/n.key")));
        let absolute = ok(
            "conf/net.yml",
            "seeds: [\"127.0.0.1:5010\", \"127.0.0.1:5011\"]\nnetwork_key: /etc/n.key\n",
        );
        assert_eq!(absolute.network_key, Some(PathBuf::from("/etc/n.key")));
        assert_eq!(ok("net.toml", seeds).network_key, None);
        let (line, message) = fail("net.toml", &format!("{seeds}network_key = 5\n"));
        assert_eq!(line, Some(2));
        assert!(message.contains("gossipnet keygen"), "{message}");
    }

    #[test]
    fn max_gossip_bytes_must_leave_room_for_the_prefix_and_fit_a_frame() {
        let head = "seeds = [\"127.0.0.1:5010\", \"127.0.0.1:5011\"]\n[peer]\n";
        let set = ok("net.toml", &format!("{head}max_gossip_bytes = 4096\n"));
        assert_eq!(set.peer.max_gossip_bytes, Some(4096));
        let (line, message) = fail("net.toml", &format!("{head}max_gossip_bytes = 10\n"));
        assert_eq!(line, Some(3));
        assert!(message.contains("use 128 or more"), "{message}");
        let (_, message) = fail("net.toml", &format!("{head}max_gossip_bytes = 600000\n"));
        assert!(message.contains("use at most 524288"), "{message}");
    }

    #[test]
    fn max_peers_per_ip_is_a_positive_whole_number() {
        let seeds = "seeds = [\"127.0.0.1:5010\", \"127.0.0.1:5011\"]\n";
        let capped = ok("net.toml", &format!("{seeds}max_peers_per_ip = 16\n"));
        assert_eq!(capped.max_peers_per_ip, Some(16));
        assert_eq!(ok("net.toml", seeds).max_peers_per_ip, None);
        for bad in ["0", "-1", "\"16\"", "1.5", "99999999999"] {
            let (line, message) = fail("net.toml", &format!("{seeds}max_peers_per_ip = {bad}\n"));
            assert_eq!(line, Some(2), "{message}");
            assert!(message.contains("at least 1"), "{message}");
        }
    }
}
