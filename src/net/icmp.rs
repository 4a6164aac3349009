//! Optional ICMP echo to neighbours' hosts (`--icmp`, R11): it shows only
//! that a host is up, not that the peer process answers, so it is the third
//! and weakest signal. Opening an ICMP socket needs privileges on most
//! systems; where that fails the node says so once and goes on without it.

use std::{future::Future, net::IpAddr, time::Duration};

use surge_ping::{Client, Config, PingIdentifier, PingSequence, ICMP};

enum Slot {
    Untried,
    Ready(Client),
    Unavailable,
}

/// One lazily opened ICMP socket per address family.
pub struct Icmp {
    v4: Slot,
    v6: Slot,
    sequence: u16,
    ident: u16,
}

/// Why an echo could not even be sent.
pub enum Unavailable {
    /// Found out just now; say so.
    Now(String),
    /// Said already.
    Before,
}

impl Icmp {
    pub fn new(ident: u16) -> Icmp {
        Icmp {
            v4: Slot::Untried,
            v6: Slot::Untried,
            sequence: 0,
            ident,
        }
    }

    /// An echo to `host` that resolves to whether it answered within
    /// `timeout`. Must be called inside a tokio runtime.
    pub fn echo(
        &mut self,
        host: IpAddr,
        timeout: Duration,
    ) -> Result<impl Future<Output = Result<(), String>> + Send + 'static, Unavailable> {
        let (slot, kind) = match host {
            IpAddr::V4(_) => (&mut self.v4, ICMP::V4),
            IpAddr::V6(_) => (&mut self.v6, ICMP::V6),
        };
        if let Slot::Untried = slot {
            *slot = match Client::new(&Config::builder().kind(kind).build()) {
                Ok(client) => Slot::Ready(client),
                Err(e) => {
                    *slot = Slot::Unavailable;
                    return Err(Unavailable::Now(format!(
                        "cannot open an ICMP socket: {e}; run as root, or allow \
                         unprivileged ICMP (sysctl net.ipv4.ping_group_range)"
                    )));
                }
            };
        }
        let Slot::Ready(client) = slot else {
            return Err(Unavailable::Before);
        };
        let client = client.clone();
        self.sequence = self.sequence.wrapping_add(1);
        let (sequence, ident) = (PingSequence(self.sequence), PingIdentifier(self.ident));
        Ok(async move {
            let mut pinger = client.pinger(host, ident).await;
            pinger.timeout(timeout);
            pinger
                .ping(sequence, &[0; 16])
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loopback_answers_or_the_lack_of_permission_is_said_once() {
        let mut icmp = Icmp::new(7);
        let Ok(echo) = icmp.echo("127.0.0.1".parse().unwrap(), Duration::from_secs(2)) else {
            // Not permitted here: then the second call must not say so again.
            assert!(matches!(
                icmp.echo("127.0.0.1".parse().unwrap(), Duration::from_secs(1)),
                Err(Unavailable::Before)
            ));
            return;
        };
        assert_eq!(echo.await, Ok(()));
        // The socket is kept: a second echo needs no new one.
        assert!(matches!(&icmp.v4, Slot::Ready(_)));
        let Ok(echo) = icmp.echo("127.0.0.1".parse().unwrap(), Duration::from_secs(2)) else {
            panic!("the socket worked a moment ago");
        };
        assert_eq!(echo.await, Ok(()));
    }
}
