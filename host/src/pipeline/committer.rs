//! The sink on a thread of its own, so that a checkpoint's commit overlaps the processing
//! of the next batches instead of stalling them. One commit is in flight at a time: the
//! next checkpoint waits for it, which bounds what is read ahead of the sink to one
//! checkpoint interval. Everything else the loop asks of the sink (restoring partitions)
//! queues behind the commit in flight, so it sees the sink as committed.

use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Result};

use super::retry::{retry, Backoff, Failed};
use crate::admin::Shared;
use crate::sink::{Checkpoint, Output, Sink};

type Job = Box<dyn FnOnce(&mut dyn Sink, &mut [Box<dyn Output>]) + Send>;

/// A commit that has landed.
pub(super) struct Committed {
    /// The offsets it stored.
    pub(super) positions: Vec<(i32, i64)>,
    /// When it was handed over.
    pub(super) sent: Instant,
}

struct InFlight {
    positions: Vec<(i32, i64)>,
    sent: Instant,
    outcome: Receiver<Result<()>>,
}

/// The sink, behind its thread.
pub(super) struct Committer {
    /// Shared only weakly with window lookups, so that dropping the committer ends the thread.
    jobs: Option<Arc<Sender<Job>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    in_flight: Option<InFlight>,
}

impl Committer {
    /// The sink's thread, which also delivers each commit's rows to `outputs`.
    pub(super) fn start(mut sink: Box<dyn Sink + Send>, mut outputs: Vec<Box<dyn Output>>) -> Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new().name("weir-sink".into()).spawn(move || {
            for job in queue {
                job(sink.as_mut(), &mut outputs);
            }
        })?;
        Ok(Committer { jobs: Some(Arc::new(jobs)), thread: Some(thread), in_flight: None })
    }

    fn send(&self, job: Job) -> Result<()> {
        self.jobs.as_ref().and_then(|j| j.send(job).ok()).ok_or_else(|| anyhow!("the sink thread has stopped"))
    }

    /// Runs `f` on the sink once everything sent before it is done, and waits for it.
    pub(super) fn with<R: Send + 'static>(&mut self, f: impl FnOnce(&mut dyn Sink) -> R + Send + 'static) -> Result<R> {
        let (reply, answer) = mpsc::channel();
        self.send(Box::new(move |sink, _| {
            let _ = reply.send(f(sink));
        }))?;
        answer.recv().map_err(|_| anyhow!("the sink thread stopped"))
    }

    /// Reads final windows back through the sink thread, behind any commit in flight, so
    /// that a window a checkpoint has just written as final is read as written.
    pub(super) fn window_lookup(&self, pipeline: String) -> Option<super::reopen::WindowLookup> {
        let jobs = Arc::downgrade(self.jobs.as_ref()?);
        Some(Box::new(move |wanted| {
            let (reply, answer) = mpsc::channel();
            let pipeline = pipeline.clone();
            let jobs = jobs.upgrade().ok_or_else(|| anyhow!("the sink thread has stopped"))?;
            jobs.send(Box::new(move |sink: &mut dyn Sink, _: &mut [Box<dyn Output>]| {
                let _ = reply.send(sink.windows_overlapping(&pipeline, &wanted));
            }))
            .map_err(|_| anyhow!("the sink thread has stopped"))?;
            answer.recv().map_err(|_| anyhow!("the sink thread stopped"))?
        }))
    }

    /// Runs `f` on the sink once everything sent before it is done, without waiting.
    pub(super) fn run(&self, f: impl FnOnce(&mut dyn Sink) + Send + 'static) -> Result<()> {
        self.send(Box::new(move |sink, _| f(sink)))
    }

    /// Makes the sink merge partial states with `merger` from the next commit on, without
    /// waiting: it queues behind the commit in flight, which the previous one merges.
    pub(super) fn set_merger(&self, merger: Box<dyn crate::sink::Merger>) -> Result<()> {
        self.send(Box::new(move |sink, _| {
            if let Err(e) = sink.set_merger(merger) {
                tracing::warn!(error = %format!("{e:#}"), "indexing the rows not final yet failed");
            }
        }))
    }

    /// Hands `checkpoint` over to be committed, retrying transient failures; the caller
    /// must have settled the previous one.
    pub(super) fn commit(
        &mut self,
        pipeline: String,
        checkpoint: Checkpoint,
        stop: Arc<AtomicBool>,
        admin: Option<Arc<Shared>>,
        watch: Option<Arc<super::watch::Watch>>,
    ) -> Result<()> {
        debug_assert!(self.in_flight.is_none(), "one commit in flight at a time");
        let positions = checkpoint.offsets.clone();
        let (done, outcome) = mpsc::channel();
        self.send(Box::new(move |sink, outputs| {
            let backoff = Backoff::default();
            let mut result = retry("checkpoint", &backoff, &stop, || {
                let outcome = sink.commit(&pipeline, &checkpoint);
                if let Some(admin) = &admin {
                    admin.sink_error(outcome.as_ref().err().map(|e| format!("{e:#}")));
                }
                outcome.map_err(|error| Failed { transient: sink.is_transient(&error), error })
            });
            if result.is_ok() && checkpoint.outbox {
                result = deliver(sink, outputs, &pipeline, &stop, admin.as_deref());
            }
            if result.is_ok() && (admin.is_some() || watch.is_some()) {
                let merged = sink.take_merged();
                if let Some(watch) = &watch {
                    watch.committed(sink, &checkpoint, &merged);
                }
                if let Some(admin) = &admin {
                    admin.committed(&checkpoint, &merged);
                }
            }
            let _ = done.send(result);
        }))?;
        self.in_flight = Some(InFlight { positions, sent: Instant::now(), outcome });
        Ok(())
    }

    /// Delivers to the outputs what an earlier run committed and did not deliver, before
    /// anything else the sink does: a run that crashed after its last commit may have
    /// nothing new to commit.
    pub(super) fn deliver_pending(
        &self,
        pipeline: String,
        stop: Arc<AtomicBool>,
        admin: Option<Arc<Shared>>,
    ) -> Result<()> {
        self.send(Box::new(move |sink, outputs| {
            if let Err(e) = deliver(sink, outputs, &pipeline, &stop, admin.as_deref()) {
                tracing::warn!(error = %format!("{e:#}"), "delivering rows committed earlier failed");
            }
        }))
    }

    /// Whether a commit is in flight (it may have landed unnoticed: see [`settle`](Self::settle)).
    pub(super) fn busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The commit in flight, once it has landed: waits for it if `wait`, else only looks.
    /// A commit that failed for good is the run's error.
    pub(super) fn settle(&mut self, wait: bool) -> Result<Option<Committed>> {
        let Some(in_flight) = &self.in_flight else { return Ok(None) };
        let outcome = if wait {
            in_flight.outcome.recv().map_err(|_| anyhow!("the sink thread stopped"))?
        } else {
            match in_flight.outcome.try_recv() {
                Ok(outcome) => outcome,
                Err(mpsc::TryRecvError::Empty) => return Ok(None),
                Err(mpsc::TryRecvError::Disconnected) => Err(anyhow!("the sink thread stopped")),
            }
        };
        let in_flight = self.in_flight.take().expect("checked above");
        outcome.map_err(|e| e.context("committing a checkpoint"))?;
        Ok(Some(Committed { positions: in_flight.positions, sent: in_flight.sent }))
    }
}

/// Delivers the outbox to every output, retrying while an output is out of reach: the
/// next checkpoint waits, so the pipeline pauses rather than piling rows up.
fn deliver(
    sink: &mut dyn Sink,
    outputs: &mut [Box<dyn Output>],
    pipeline: &str,
    stop: &AtomicBool,
    admin: Option<&Shared>,
) -> Result<()> {
    if outputs.is_empty() {
        return Ok(());
    }
    retry("delivering to the outputs", &Backoff::default(), stop, || {
        let outcome = sink.deliver(pipeline, outputs);
        if let Some(admin) = admin {
            admin.sink_error(outcome.as_ref().err().map(|e| format!("{e:#}")));
        }
        outcome.map_err(|error| {
            let transient = sink.is_transient(&error) || outputs.iter().any(|o| o.is_transient(&error));
            Failed { transient, error }
        })
    })?;
    for output in outputs.iter_mut() {
        // Housekeeping fails alone: the rows are delivered, and it is tried again later.
        if let Err(e) = output.maintain(pipeline) {
            tracing::warn!(error = %format!("{e:#}"), "output housekeeping failed");
        }
    }
    Ok(())
}

impl Drop for Committer {
    /// Waits for the sink thread only when nothing is in flight: a run that fails while a
    /// commit is being retried must not hang on it (the uncommitted transaction is simply
    /// lost, and a restart resumes from the last one that landed).
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take().filter(|_| self.in_flight.is_none()) {
            let _ = thread.join();
        }
    }
}
