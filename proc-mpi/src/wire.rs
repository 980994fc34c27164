//! What the front end (rank 0) and the node agents say to each other: postcard-encoded
//! [`Down`] and [`Up`] messages, one per MPI message, and the wire form of a task's error.

use std::time::Duration;

use proc_core::handle::CodeAddr;
use proc_pool::remote::EncodedInit;
use serde::{Deserialize, Serialize};

use crate::transport::HEAD;

/// From the front end to an agent.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Down {
    /// Start a local pool for a new cluster pool (a session).
    Open(Open),
    /// Run these tasks on the local pool (every task the front end had for this agent at once).
    Tasks(Vec<TaskMsg>),
    /// Every task is done: stop the local pool (`close` + `join`), then say [`Up::Closed`].
    Close,
    /// Stop the local pool now (`terminate` + `join`), then say [`Up::Closed`].
    Terminate,
    /// The program ends: leave MPI and exit.
    Exit,
}

/// A task: the trampoline of its function and its encoded chunk.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TaskMsg {
    pub(crate) id: u64,
    pub(crate) func: CodeAddr,
    pub(crate) args: Payload,
}

/// Bytes a message carries: in it, or (large ones) as the next of its parts, so that they travel
/// without a copy into the message.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Payload {
    Inline(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The next part of the message.
    Part,
}

/// Payloads larger than this travel as parts of their own.
const INLINE_MAX: usize = 64 << 10;

impl Payload {
    /// `bytes` in a message: large ones go to `parts`.
    pub(crate) fn put(bytes: Vec<u8>, parts: &mut Vec<Vec<u8>>) -> Payload {
        if bytes.len() > INLINE_MAX {
            parts.push(bytes);
            Payload::Part
        } else {
            Payload::Inline(bytes)
        }
    }

    /// The bytes, taking the next of the message's `parts` for a [`Payload::Part`]. `None` when
    /// the message has no part left (it is malformed).
    pub(crate) fn take(self, parts: &mut impl Iterator<Item = Vec<u8>>) -> Option<Vec<u8>> {
        match self {
            Payload::Inline(bytes) => Some(bytes),
            Payload::Part => parts.next(),
        }
    }

    /// Bytes it adds to the message it is in.
    pub(crate) fn inline_len(&self) -> usize {
        match self {
            Payload::Inline(bytes) => bytes.len(),
            Payload::Part => 0,
        }
    }
}

/// A task's outcome: its encoded results, or its error.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DoneMsg {
    pub(crate) id: u64,
    /// How long the task took on its host, in microseconds (from its submission to the local
    /// pool to its outcome).
    pub(crate) ran_us: u64,
    pub(crate) outcome: Result<Payload, WireError>,
}

/// A cluster pool's options, for each agent's local pool.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Open {
    /// Workers per agent (`None`: the host's usable CPUs).
    pub(crate) processes: Option<usize>,
    pub(crate) init: Option<EncodedInit>,
    pub(crate) max_tasks: Option<u64>,
    /// A start method's name.
    pub(crate) start_method: Option<String>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) prefetch: usize,
}

/// From an agent to the front end.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Up {
    /// Sent once, after the agent joined MPI.
    Hello(Hello),
    /// The local pool runs, with this many workers.
    Opened { workers: u32 },
    /// The local pool could not be started.
    Failed(WireError),
    /// Outcomes of tasks (every one the agent had at once).
    Done(Vec<DoneMsg>),
    /// The local pool has stopped.
    Closed,
}

/// Who an agent is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Hello {
    /// Its host's name (MPI's processor name).
    pub(crate) host: String,
    /// Its host's usable CPUs.
    pub(crate) cpus: u32,
    /// Its build: the place and fingerprint of a function of this crate, the same in every
    /// process of one binary.
    pub(crate) build: CodeAddr,
}

/// A proc-pool error as it crosses hosts: its variant and text (causes stay where they were).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum WireError {
    Panicked { message: String, location: Option<String> },
    WorkerLost { pid: u32, signal: Option<i32>, exit_code: Option<i32> },
    TaskTimeout(Duration),
    Arguments(String),
    Return(String),
    Initializer(String),
    Terminated,
    Closed,
    InvalidArgument(String),
    Other(String),
}

impl From<&proc_pool::Error> for WireError {
    fn from(e: &proc_pool::Error) -> Self {
        use proc_pool::Error as E;
        match e {
            E::Panicked { message, location } => {
                WireError::Panicked { message: message.clone(), location: location.clone() }
            }
            E::WorkerLost { pid, signal, exit_code } => {
                WireError::WorkerLost { pid: *pid, signal: *signal, exit_code: *exit_code }
            }
            E::TaskTimeout(d) => WireError::TaskTimeout(*d),
            E::Arguments { message, .. } => WireError::Arguments(message.clone()),
            E::Return { message, .. } => WireError::Return(message.clone()),
            E::Initializer(m) => WireError::Initializer(m.clone()),
            E::Terminated => WireError::Terminated,
            E::Closed => WireError::Closed,
            E::InvalidArgument(m) => WireError::InvalidArgument(m.clone()),
            other => WireError::Other(other.to_string()),
        }
    }
}

impl From<WireError> for proc_pool::Error {
    fn from(e: WireError) -> Self {
        use proc_pool::Error as E;
        match e {
            WireError::Panicked { message, location } => E::Panicked { message, location },
            WireError::WorkerLost { pid, signal, exit_code } => E::WorkerLost { pid, signal, exit_code },
            WireError::TaskTimeout(d) => E::TaskTimeout(d),
            WireError::Arguments(message) => E::Arguments { message, source: None },
            WireError::Return(message) => E::Return { message, source: None },
            WireError::Initializer(m) => E::Initializer(m),
            WireError::Terminated => E::Terminated,
            WireError::Closed => E::Closed,
            WireError::InvalidArgument(m) => E::InvalidArgument(m),
            WireError::Other(message) => E::Os { message, source: None },
        }
    }
}

/// Encodes a message as the first part of a transport message (after the transport's head).
pub(crate) fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, proc_core::codec::Error> {
    proc_core::codec::to_extend(message, vec![0; HEAD])
}

/// Encodes a message as a transport message: its first part, then `parts` (the payloads it
/// names [`Payload::Part`]).
pub(crate) fn encode_parts<T: Serialize>(
    message: &T,
    parts: Vec<Vec<u8>>,
) -> Result<Vec<Vec<u8>>, proc_core::codec::Error> {
    let mut all = Vec::with_capacity(1 + parts.len());
    all.push(encode(message)?);
    all.extend(parts);
    Ok(all)
}

/// Decodes a message from the first part of a transport message.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, proc_core::codec::Error> {
    proc_core::codec::from_bytes(bytes.get(HEAD..).unwrap_or_default())
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn errors_cross_with_their_variant_and_text() {
        let lost = proc_pool::Error::WorkerLost { pid: 7, signal: Some(9), exit_code: None };
        let back: proc_pool::Error = WireError::from(&lost).into();
        assert!(back.is_worker_lost());
        assert_eq!(back.to_string(), lost.to_string());
        let panic = proc_pool::Error::Panicked { message: "boom".into(), location: Some("a.rs:1:2".into()) };
        let bytes = encode(&WireError::from(&panic)).unwrap();
        let back: proc_pool::Error = decode::<WireError>(&bytes).unwrap().into();
        assert!(back.is_panic());
        assert_eq!(back.to_string(), panic.to_string());
    }

    #[test]
    fn a_truncated_message_is_an_error() {
        let bytes = encode(&Down::Tasks(vec![TaskMsg {
            id: 1,
            func: CodeAddr::of(errors as fn() as usize),
            args: Payload::Inline(vec![1; 64]),
        }]))
        .unwrap();
        for cut in HEAD..bytes.len() {
            assert!(decode::<Down>(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    fn errors() {}
}
