//! Delivers alerts without ever making their sender wait: a bounded queue
//! (when full, the oldest waiting alert is dropped and counted) drained by
//! one task that speaks plain SMTP, as keepalived does, through lettre.
//! A delivery that fails is retried with a doubling pause until
//! [`Policy::give_up_after`], then dropped with an error; each attempt is
//! bounded by `smtp_connect_timeout`.

use super::message::Message;
use anyhow::{Context, Result};
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Tokio1Executor,
    message::{
        Mailbox,
        header::{HeaderName, HeaderValue},
    },
    transport::smtp::extension::ClientId,
};
use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::{sync::Notify, task::JoinHandle};
use tracing::{error, info, warn};

/// Where and how alerts are sent (from the `[global]` keys).
#[derive(Clone, Debug)]
pub struct Envelope {
    pub server: (String, u16),
    pub helo_name: String,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    /// Bounds each delivery attempt, from connecting to QUIT.
    pub timeout: Duration,
}

/// Queue size and retry pacing.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Alerts waiting at most; one more drops the oldest.
    pub capacity: usize,
    pub first_retry: Duration,
    pub max_retry: Duration,
    /// An alert not delivered this long after its first attempt is dropped.
    pub give_up_after: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            capacity: 256,
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(60),
            give_up_after: Duration::from_secs(600),
        }
    }
}

/// What happened to the alerts so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Waiting in the queue (not counting one being delivered).
    pub queued: usize,
    pub sent: u64,
    /// Dropped unsent because the queue was full.
    pub dropped: u64,
    /// Dropped after retrying for [`Policy::give_up_after`].
    pub failed: u64,
}

struct Queue {
    waiting: Mutex<VecDeque<Message>>,
    wake: Notify,
    capacity: usize,
    /// Waiting plus the one being delivered.
    pending: AtomicUsize,
    sent: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

impl Queue {
    fn push(&self, message: Message) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if waiting.len() >= self.capacity
            && let Some(old) = waiting.pop_front()
        {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            let dropped = self.dropped.fetch_add(1, Ordering::SeqCst) + 1;
            warn!(subject = %old.subject, dropped, capacity = self.capacity, "alert queue full: dropped the oldest alert");
        }
        waiting.push_back(message);
        self.pending.fetch_add(1, Ordering::SeqCst);
        drop(waiting);
        self.wake.notify_one();
    }

    async fn next(&self) -> Message {
        loop {
            let head = self
                .waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
            if let Some(m) = head {
                return m;
            }
            // A permit stored by a push between the check and here wakes us at once.
            self.wake.notified().await;
        }
    }
}

/// The queue and its delivery task; dropping it ends the task.
pub struct Mailer {
    queue: Arc<Queue>,
    task: JoinHandle<()>,
}

impl Mailer {
    /// Starts the delivery task (needs a tokio runtime).
    pub fn start(envelope: Envelope, policy: Policy) -> Mailer {
        let queue = Arc::new(Queue {
            waiting: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            capacity: policy.capacity.max(1),
            pending: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let task = tokio::spawn(deliver(queue.clone(), envelope, policy));
        Mailer { queue, task }
    }

    /// Queues `message`; never waits.
    pub fn send(&self, message: Message) {
        self.queue.push(message);
    }

    pub fn stats(&self) -> Stats {
        Stats {
            queued: self
                .queue
                .waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .len(),
            sent: self.queue.sent.load(Ordering::SeqCst),
            dropped: self.queue.dropped.load(Ordering::SeqCst),
            failed: self.queue.failed.load(Ordering::SeqCst),
        }
    }

    /// Waits (at most `within`) until every queued alert was delivered or
    /// given up; whether that happened.
    pub async fn flush(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.queue.pending.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

impl Drop for Mailer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The mail as it goes out: keepalived's headers (From, To with every
/// recipient, Subject, Date, X-Mailer) and the body as plain text.
pub fn compose(envelope: &Envelope, message: &Message) -> Result<lettre::Message> {
    let mut builder = lettre::Message::builder()
        .from(envelope.from.clone())
        .subject(message.subject.clone())
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Mailer"),
            "xlb".to_string(),
        ));
    for to in &envelope.to {
        builder = builder.to(to.clone());
    }
    builder
        .body(message.body.clone())
        .context("composing the alert")
}

async fn deliver(queue: Arc<Queue>, envelope: Envelope, policy: Policy) {
    let (host, port) = envelope.server.clone();
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(port)
        .hello_name(ClientId::Domain(envelope.helo_name.clone()))
        .timeout(Some(envelope.timeout))
        .build();
    loop {
        let message = queue.next().await;
        match compose(&envelope, &message) {
            Ok(mail) => {
                if send_with_retries(&transport, &mail, &message, &envelope, policy).await {
                    queue.sent.fetch_add(1, Ordering::SeqCst);
                } else {
                    queue.failed.fetch_add(1, Ordering::SeqCst);
                }
            }
            Err(e) => {
                error!(subject = %message.subject, error = %crate::logging::chain(&e), "alert dropped");
                queue.failed.fetch_add(1, Ordering::SeqCst);
            }
        }
        queue.pending.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether `mail` was accepted before the retry budget ran out.
async fn send_with_retries(
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    mail: &lettre::Message,
    message: &Message,
    envelope: &Envelope,
    policy: Policy,
) -> bool {
    let first = Instant::now();
    let mut pause = policy.first_retry;
    let server = format!("{}:{}", envelope.server.0, envelope.server.1);
    loop {
        let why = match tokio::time::timeout(envelope.timeout, transport.send(mail.clone())).await {
            Ok(Ok(_)) => {
                info!(subject = %message.subject, %server, "alert sent");
                return true;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", envelope.timeout),
        };
        if first.elapsed() + pause > policy.give_up_after {
            error!(subject = %message.subject, %server, error = %why, given_up_after_s = policy.give_up_after.as_secs_f64(), "alert dropped: not delivered in time");
            return false;
        }
        warn!(subject = %message.subject, %server, error = %why, retry_in_s = pause.as_secs_f64(), "sending alert failed; retrying");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(policy.max_retry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            server: ("127.0.0.1".into(), 25),
            helo_name: "lb1".into(),
            from: "lb1@example.com".parse().unwrap(),
            to: vec![
                "ops@example.com".parse().unwrap(),
                "Pager <pager@example.com>".parse().unwrap(),
            ],
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn headers_as_keepalived_sends_them() {
        let m = Message {
            subject: "[lb1] VRRP Instance VI_1 - Entering MASTER state".into(),
            body: "=> VRRP Instance is now owning VRRP VIPs <=".into(),
        };
        let text = String::from_utf8(compose(&envelope(), &m).unwrap().formatted()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let headers: Vec<&str> = head.split("\r\n").collect();
        assert!(headers.contains(&"From: lb1@example.com"), "{head}");
        assert!(
            headers.contains(&"To: ops@example.com, Pager <pager@example.com>"),
            "{head}"
        );
        assert!(
            headers.contains(&"Subject: [lb1] VRRP Instance VI_1 - Entering MASTER state"),
            "{head}"
        );
        assert!(headers.contains(&"X-Mailer: xlb"), "{head}");
        assert!(headers.iter().any(|h| h.starts_with("Date: ")), "{head}");
        assert_eq!(body, "=> VRRP Instance is now owning VRRP VIPs <=");
        let rcpt: Vec<String> = compose(&envelope(), &m)
            .unwrap()
            .envelope()
            .to()
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(rcpt, ["ops@example.com", "pager@example.com"]);
    }

    #[tokio::test]
    async fn full_queue_drops_the_oldest_and_counts() {
        // Nothing listens on port 9 of loopback: every attempt fails fast.
        let env = Envelope {
            server: ("127.0.0.1".into(), 9),
            ..envelope()
        };
        let policy = Policy {
            capacity: 2,
            first_retry: Duration::from_secs(3600),
            max_retry: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(7200),
        };
        let mailer = Mailer::start(env, policy);
        let msg = |n: u32| Message {
            subject: format!("alert {n}"),
            body: String::new(),
        };
        mailer.send(msg(0));
        // The task takes alert 0 and waits to retry it; two more fill the queue.
        let took = async {
            while mailer.stats().queued > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), took)
            .await
            .unwrap();
        for n in 1..=5 {
            mailer.send(msg(n));
        }
        assert_eq!(mailer.stats().dropped, 3);
        let waiting: Vec<String> = mailer
            .queue
            .waiting
            .lock()
            .unwrap()
            .iter()
            .map(|m| m.subject.clone())
            .collect();
        assert_eq!(waiting, ["alert 4", "alert 5"], "the newest stay");
        assert!(!mailer.flush(Duration::from_millis(50)).await);
    }
}
