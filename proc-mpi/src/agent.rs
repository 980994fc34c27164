//! A node agent: every rank but 0. It runs no user code itself: for each cluster pool (a session)
//! it starts a local [`Pool`] with the pool's options, submits the tasks the front end sends to it
//! as they came (function and encoded chunk), and sends back each outcome. A task that panics,
//! whose worker is killed or runs past its timeout fails alone, in the local pool: the rank never
//! runs a task and never dies with one.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use proc_core::handle::CodeAddr;
use proc_pool::{Error, Pool};

use crate::pace::Pace;
use crate::transport::{LinkError, Transport, BATCH_BYTES, MAX_MESSAGE};
use crate::wire::{self, DoneMsg, Down, Hello, Open, Payload, TaskMsg, Up, WireError};

/// What identifies this build: the place and fingerprint of this function, the same in every
/// process of one binary and different in another build of it.
pub(crate) fn build_id() -> CodeAddr {
    CodeAddr::of(build_id as fn() -> CodeAddr as usize)
}

/// The longest an agent sleeps while its tasks are long: an outcome of its pool wakes it at once,
/// and the front end sends it tasks in answer to outcomes, so only a new submission may wait
/// this long (while the agent's pool is busy with older tasks).
const LONG_PAUSE: Duration = Duration::from_millis(8);

/// Outcomes of the local pool's tasks, from its supervisor thread to the agent's loop.
type Outcomes = mpsc::Receiver<(u64, proc_pool::Result<Vec<u8>>, Duration)>;

fn send(t: &mut dyn Transport, to: u32, message: &Up) -> Result<(), LinkError> {
    send_parts(t, to, message, Vec::new())
}

/// Sends `message`, then `parts` (the payloads it names [`Payload::Part`](wire::Payload::Part)).
fn send_parts(t: &mut dyn Transport, to: u32, message: &Up, parts: Vec<Vec<u8>>) -> Result<(), LinkError> {
    let message = wire::encode_parts(message, parts)
        .map_err(|e| LinkError { rank: Some(to), message: e.to_string() })?;
    t.send(to, message)
}

/// Serves the front end (rank 0) until it says [`Down::Exit`]. Returns an error when the link to
/// it fails.
pub(crate) fn serve(t: &mut dyn Transport) -> Result<(), LinkError> {
    let hello = Hello { host: t.host(), cpus: proc_core::process_cpu_count() as u32, build: build_id() };
    send(t, 0, &Up::Hello(hello))?;
    let (tx, rx) = mpsc::channel();
    let mut pool: Option<Pool> = None;
    // Tasks submitted to the local pool and not reported yet.
    let mut running = 0usize;
    let mut pace = Pace::with_long_pause(LONG_PAUSE);
    loop {
        let mut progress = false;
        while let Some((from, parts)) = t.try_recv()? {
            progress = true;
            let mut parts = parts.into_iter();
            let head = parts.next().unwrap_or_default();
            let message = match wire::decode::<Down>(&head) {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(from, error = %e, "a message the node agent cannot read");
                    continue;
                }
            };
            match message {
                Down::Open(open) => {
                    stop(pool.take(), false, &rx);
                    running = 0;
                    let reply = match open_pool(&open) {
                        Ok(p) => {
                            let workers = p.processes() as u32;
                            pool = Some(p);
                            Up::Opened { workers }
                        }
                        Err(e) => Up::Failed((&e).into()),
                    };
                    send(t, from, &reply)?;
                }
                Down::Tasks(tasks) => {
                    let mut refused = Vec::new();
                    for TaskMsg { id, func, args } in tasks {
                        let Some(args) = args.take(&mut parts) else {
                            let e = Error::Arguments {
                                message: "a task's bytes were missing".into(),
                                source: None,
                            };
                            refused.push(DoneMsg { id, ran_us: 0, outcome: Err((&e).into()) });
                            continue;
                        };
                        let submitted = match &pool {
                            Some(p) => {
                                let tx = tx.clone();
                                let submitted = Instant::now();
                                p.submit_raw(func, args, move |outcome| {
                                    let _ = tx.send((id, outcome, submitted.elapsed()));
                                })
                            }
                            None => Err(Error::Closed),
                        };
                        match submitted {
                            Ok(()) => running += 1,
                            Err(e) => refused.push(DoneMsg { id, ran_us: 0, outcome: Err((&e).into()) }),
                        }
                    }
                    if !refused.is_empty() {
                        send(t, from, &Up::Done(refused))?;
                    }
                }
                Down::Close => {
                    stop(pool.take(), true, &rx);
                    running = 0;
                    send(t, from, &Up::Closed)?;
                }
                Down::Terminate => {
                    stop(pool.take(), false, &rx);
                    running = 0;
                    send(t, from, &Up::Closed)?;
                }
                Down::Exit => {
                    stop(pool.take(), false, &rx);
                    return Ok(());
                }
            }
        }
        let reported = report(t, &rx, None, &mut pace)?;
        running = running.saturating_sub(reported);
        progress |= reported > 0;
        t.flush()?;
        if progress {
            pace.reset();
        } else if let Some(pause) = pace.next() {
            // A local outcome ends the pause at once; a message waits for the next look, so
            // with nothing running here (new work can only come from the front end) the pause
            // is short.
            let pause = if running == 0 { pause.min(crate::pace::MAX) } else { pause };
            let reported = report(t, &rx, Some(pause), &mut pace)?;
            if reported > 0 {
                running = running.saturating_sub(reported);
                pace.reset();
            }
        }
    }
}

/// Sends the front end every outcome there is, in one message, waiting up to `wait` for the
/// first. Returns how many there were.
fn report(
    t: &mut dyn Transport,
    outcomes: &Outcomes,
    wait: Option<Duration>,
    pace: &mut Pace,
) -> Result<usize, LinkError> {
    let first = match wait {
        Some(d) => outcomes.recv_timeout(d).ok(),
        None => outcomes.try_recv().ok(),
    };
    let Some(first) = first else { return Ok(0) };
    let mut count = 0;
    let mut batch: Vec<DoneMsg> = Vec::new();
    let mut parts: Vec<Vec<u8>> = Vec::new();
    let mut bytes = 0usize;
    for (id, outcome, ran) in std::iter::once(first).chain(std::iter::from_fn(|| outcomes.try_recv().ok())) {
        pace.observe(ran);
        count += 1;
        let outcome = match outcome {
            Ok(r) if r.len() > MAX_MESSAGE - 1024 => Err(WireError::Return(format!(
                "the result is {} bytes, more than one MPI message carries",
                r.len()
            ))),
            Ok(r) => Ok(Payload::put(r, &mut parts)),
            Err(e) => Err((&e).into()),
        };
        bytes += outcome.as_ref().map_or(64, |p| p.inline_len() + 16);
        batch.push(DoneMsg { id, ran_us: ran.as_micros() as u64, outcome });
        if bytes > BATCH_BYTES {
            send_parts(t, 0, &Up::Done(std::mem::take(&mut batch)), std::mem::take(&mut parts))?;
            bytes = 0;
        }
    }
    if !batch.is_empty() {
        send_parts(t, 0, &Up::Done(batch), parts)?;
    }
    Ok(count)
}

/// Stops a session's pool: `close` (every task is done) or `terminate`, then `join`; drops the
/// outcomes left (the front end has settled those tasks).
fn stop(pool: Option<Pool>, close: bool, outcomes: &Outcomes) {
    if let Some(pool) = pool {
        if close {
            pool.close();
        } else {
            pool.terminate();
        }
        if !matches!(pool.join_timeout(Duration::from_secs(30)), Ok(true)) {
            tracing::warn!("a node agent's pool did not stop in 30 s; terminating it");
            pool.terminate();
            let _ = pool.join();
        }
    }
    while outcomes.try_recv().is_ok() {}
}

/// Starts the local pool of a session.
fn open_pool(open: &Open) -> proc_pool::Result<Pool> {
    let mut b = Pool::builder().prefetch(open.prefetch);
    if let Some(n) = open.processes {
        b = b.processes(n);
    }
    if let Some(init) = &open.init {
        b = b.encoded_initializer(init.clone());
    }
    if let Some(n) = open.max_tasks {
        b = b.maxtasksperchild(n);
    }
    if let Some(m) = &open.start_method {
        let method = m.parse().map_err(|_| Error::InvalidArgument(format!("unknown start method {m:?}")))?;
        b = b.start_method(method);
    }
    if let Some(t) = open.timeout {
        b = b.task_timeout(t);
    }
    b.build()
}
