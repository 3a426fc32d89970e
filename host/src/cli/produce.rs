//! `weir produce`: the synthetic trip stream into a Kafka topic, keyed by city, at a
//! steady rate. The same seed always produces the same events in the same order.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use crate::rides::{TripGenerator, TripOptions};

/// Arguments of `weir produce`.
#[derive(clap::Args)]
pub struct ProduceArgs {
    /// Bootstrap servers, `host:port[,host:port…]`.
    #[arg(long, env = "KAFKA_BROKERS")]
    brokers: String,
    /// The topic; created with `--partitions` partitions when missing.
    #[arg(long, env = "KAFKA_TOPIC", default_value = "trips")]
    topic: String,
    /// Partitions of a newly created topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// How many events.
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Events per second of wall time; 0 sends as fast as the broker takes them.
    #[arg(long, default_value_t = 0)]
    rate: u32,
    /// Events per second of event time (default: `--rate`, or 1000 when unthrottled).
    #[arg(long)]
    event_rate: Option<u32>,
    /// The seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Share of out-of-order events (half within 5 minutes, half 15 to 18 minutes late).
    #[arg(long, default_value_t = 0.02)]
    late_share: f64,
    /// Share of malformed events.
    #[arg(long, default_value_t = 0.01)]
    malformed_share: f64,
    /// Event time of the first event: an ISO-8601 time, or `now` (default 2024-05-01T00:00:00Z).
    #[arg(long)]
    start: Option<String>,
    /// The message key: `city` (the window key of the rides pipelines), `trip` (a key per
    /// event, as a trip id spreads them), or `none` (spread at random, as producers without
    /// a key do).
    #[arg(long, value_enum, default_value_t = Keying::City)]
    key: Keying,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

/// What `weir produce` keys messages by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Keying {
    /// The city.
    City,
    /// A key per event.
    Trip,
    /// No key.
    None,
}

fn ensure_topic(brokers: &str, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .with_context(|| format!("--brokers {brokers}: creating an admin client"))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = runtime
        .block_on(admin.create_topics([&new], &options))
        .with_context(|| format!("creating topic {topic} on {brokers}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("creating topic {name} on {brokers}: {code}"),
        }
    }
    Ok(())
}

pub fn run(args: ProduceArgs) -> Result<()> {
    if args.partitions < 1 {
        bail!("--partitions must be at least 1");
    }
    for (flag, share) in [("--late-share", args.late_share), ("--malformed-share", args.malformed_share)] {
        if !(0.0..=1.0).contains(&share) {
            bail!("{flag} {share}: a share lies between 0 and 1");
        }
    }
    let mut options = TripOptions {
        seed: args.seed,
        events_per_second: args.event_rate.unwrap_or(if args.rate > 0 { args.rate } else { 1000 }),
        late_share: args.late_share,
        malformed_share: args.malformed_share,
        ..TripOptions::default()
    };
    match args.start.as_deref() {
        None => {}
        Some("now") => options.start_ms = crate::pipeline::now_ms(),
        Some(time) => {
            options.start_ms = weir_sdk::time::parse_iso8601(time.as_bytes())
                .with_context(|| format!("--start {time:?}: expected an ISO-8601 time or `now`"))?
        }
    }
    ensure_topic(&args.brokers, &args.topic, args.partitions)?;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("compression.type", "lz4")
        .set("enable.idempotence", "true")
        .create()
        .with_context(|| format!("--brokers {}: creating a producer", args.brokers))?;
    let mut generator = TripGenerator::new(options.clone());
    let mut payload = Vec::with_capacity(256);
    let mut started = Instant::now();
    let mut last_progress = Instant::now();
    for n in 0..args.events {
        if n == 1 {
            // The first event waits until the idempotent producer has its id from the
            // broker (half a second on some brokers); the paced clock starts after it, so
            // the events that follow are not stamped long before they can be sent.
            producer.flush(Duration::from_secs(30)).context("sending the first event")?;
            started = Instant::now();
        }
        if args.rate > 0 {
            // Pace by the schedule, not by sleeps per event: bursts never drift.
            let due = Duration::from_secs_f64(n as f64 / f64::from(args.rate));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        payload.clear();
        let city = generator.next_into(&mut payload);
        let trip = format!("trip-{}-{n}", args.seed);
        let key = match args.key {
            Keying::City => Some(options.cities[city].as_bytes()),
            Keying::Trip => Some(trip.as_bytes()),
            Keying::None => None,
        };
        let mut record = BaseRecord::<[u8], [u8]>::to(&args.topic).payload(payload.as_slice());
        if let Some(key) = key {
            record = record.key(key);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The local queue is full: let librdkafka drain it, then resend.
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e).with_context(|| format!("producing event {n} to {}", args.topic)),
            }
        }
        if !args.quiet && last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            let rate = n as f64 / started.elapsed().as_secs_f64();
            eprint!("\r{n:>10} / {} events  {rate:>9.0}/s   ", args.events);
        }
    }
    producer.flush(Duration::from_secs(60)).context("flushing the producer")?;
    if !args.quiet {
        eprintln!();
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{} events to {} on {} in {elapsed:.2}s ({:.0}/s)",
        args.events,
        args.topic,
        args.brokers,
        args.events as f64 / elapsed.max(1e-9)
    );
    Ok(())
}
