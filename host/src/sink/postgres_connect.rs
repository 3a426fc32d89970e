//! Connecting to PostgreSQL so that a lost network path is noticed.
//!
//! tokio-postgres, like libpq, leaves a connection to the operating system's TCP timers,
//! which give up on a peer that stopped answering (a network partition, a machine that
//! vanished) after about 15 minutes. Until then a commit just waits: the host holds its
//! Kafka partitions, reads nothing and still looks ready. So unless the URL sets its own
//! value, weir bounds each wait:
//! - connecting: `connect_timeout`, 10 s for each host's TCP connect, and as long again
//!   for the startup exchange;
//! - data sent and not acknowledged (Linux): `tcp_user_timeout`, 20 s;
//! - a connection waiting for an answer: keepalive probes after 10 s, every 5 s.
//!
//! A connection that times out is a transient failure (`is_transient`): readiness drops,
//! and the checkpoint is retried on a new connection with backoff.
//!
//! The server is told the same of weir's sessions: one left idle inside a transaction for
//! 60 s is ended (`idle_in_transaction_session_timeout`, unless the server or role sets one),
//! so a host cut off in the middle of a commit does not keep its checkpoint rows locked
//! against the host that takes its partitions over. weir's transactions never idle: their
//! statements follow one another.

use std::time::Duration;

use anyhow::{Context, Result};
use tokio_postgres::{Client, Config, NoTls};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(20);
const KEEPALIVES_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVES_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVES_RETRIES: u32 = 3;
const IDLE_IN_TRANSACTION: &str = "60s";

/// A connection to `url`, its driver spawned on the current runtime.
pub(crate) async fn connect(url: &str) -> Result<Client> {
    let context = || format!("sink.url: connecting to PostgreSQL at {}", redact(url));
    let config = bounded(url).with_context(context)?;
    // `connect_timeout` bounds each host's TCP connect in turn (libpq's meaning); the
    // whole, startup exchange included, gets one more.
    let tries = config.get_hosts().len().max(1) as u32 + 1;
    let timeout = config.get_connect_timeout().copied().unwrap_or(CONNECT_TIMEOUT) * tries;
    let client = async {
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL connection ended");
            }
        });
        client
            .batch_execute(&format!(
                "SELECT set_config('idle_in_transaction_session_timeout', '{IDLE_IN_TRANSACTION}', false) \
                 WHERE current_setting('idle_in_transaction_session_timeout', true) = '0'"
            ))
            .await?;
        Ok::<_, tokio_postgres::Error>(client)
    };
    match tokio::time::timeout(timeout, client).await {
        Ok(client) => client.with_context(context),
        // An io error, so that `is_transient` retries it like a refused connection.
        Err(_) => Err(anyhow::Error::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {timeout:?} (connect_timeout)"),
        )))
        .with_context(context),
    }
}

/// `url` parsed, with weir's bounds wherever it does not set its own.
fn bounded(url: &str) -> Result<Config> {
    let mut config: Config = url.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    // Unset, the idle time reads as tokio-postgres's default of two hours.
    if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(KEEPALIVES_IDLE);
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(KEEPALIVES_INTERVAL);
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(KEEPALIVES_RETRIES);
    }
    Ok(config)
}

/// `url` without its password, for messages.
pub(super) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact("postgres://weir:secret@db:5432/x"), "postgres://weir:***@db:5432/x");
        assert_eq!(redact("host=/tmp dbname=x"), "host=/tmp dbname=x");
    }

    #[test]
    fn weir_bounds_what_the_url_leaves_unset_and_keeps_what_it_sets() {
        let c = bounded("postgres://weir@db/x").unwrap();
        assert_eq!(c.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert_eq!(c.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
        assert_eq!(c.get_keepalives_idle(), KEEPALIVES_IDLE);
        assert_eq!(c.get_keepalives_interval(), Some(KEEPALIVES_INTERVAL));
        let c = bounded("postgres://weir@db/x?connect_timeout=3&keepalives_idle=60&tcp_user_timeout=7").unwrap();
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(c.get_tcp_user_timeout(), Some(&Duration::from_secs(7)));
        assert_eq!(c.get_keepalives_idle(), Duration::from_secs(60));
        let c = bounded("host=db dbname=x keepalives_interval = 2\tkeepalives_idle=30").unwrap();
        assert_eq!(c.get_keepalives_interval(), Some(Duration::from_secs(2)));
        assert_eq!(c.get_keepalives_idle(), Duration::from_secs(30));
        assert_eq!(c.get_keepalives_retries(), Some(KEEPALIVES_RETRIES));
    }
}
