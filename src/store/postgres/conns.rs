//! Connections held outside the sqlx pool for the hot paths (token lookups, the group-commit
//! writer). A pooled query pays for a liveness ping when the connection is taken and another when it is
//! given back, each a network round trip, so a one-row lookup cost three round trips instead of
//! one. Here a connection is simply locked, used and unlocked; one that fails at the transport
//! level is dropped and reopened on next use.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use sqlx::{ConnectOptions, Connection, Database};
use tokio::sync::{Mutex, MutexGuard};

use crate::store::StoreError;

/// How many lookup connections to hold beside a pool of `max_connections`.
pub fn readers(max_connections: u32) -> usize {
    max_connections.clamp(2, 8) as usize
}

pub struct Dedicated<DB: Database> {
    opts: <DB::Connection as Connection>::Options,
    slots: Vec<Mutex<Option<DB::Connection>>>,
    next: AtomicUsize,
    /// Set by [`Dedicated::close`]: no connection is opened again.
    closed: AtomicBool,
}

impl<DB: Database> Dedicated<DB> {
    /// `n` connections (at least one), opened lazily.
    pub fn new(opts: <DB::Connection as Connection>::Options, n: usize) -> Self {
        Self {
            opts,
            slots: (0..n.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        }
    }

    /// A free connection if there is one, else waits for one in turn.
    pub async fn get(&self) -> Result<Lease<'_, DB>, StoreError> {
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let free = (0..n).find_map(|i| self.slots.get((start + i) % n)?.try_lock().ok());
        let mut guard = match free {
            Some(g) => g,
            None => match self.slots.get(start % n) {
                Some(slot) => slot.lock().await,
                None => return Err(StoreError::Corrupt("no connection slots".into())),
            },
        };
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::WriterClosed);
        }
        if guard.is_none() {
            *guard = Some(self.opts.connect().await?);
        }
        Ok(Lease { guard })
    }

    /// `(max, open, busy)`: a connection is busy while a lease holds it.
    pub fn usage(&self) -> (usize, usize, usize) {
        let (mut open, mut busy) = (0, 0);
        for slot in &self.slots {
            match slot.try_lock() {
                Ok(g) => open += usize::from(g.is_some()),
                Err(_) => {
                    open += 1;
                    busy += 1;
                }
            }
        }
        (self.slots.len(), open, busy)
    }

    pub async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for slot in &self.slots {
            if let Some(c) = slot.lock().await.take() {
                let _ = c.close().await;
            }
        }
    }
}

pub struct Lease<'a, DB: Database> {
    guard: MutexGuard<'a, Option<DB::Connection>>,
}

impl<DB: Database> Lease<'_, DB> {
    pub fn conn(&mut self) -> Result<&mut DB::Connection, StoreError> {
        self.guard
            .as_mut()
            .ok_or_else(|| StoreError::Corrupt("connection was discarded".into()))
    }

    /// Passes `r` through; a transport-level error also drops the connection so that the next
    /// lease opens a fresh one.
    pub fn check<T, E: Into<StoreError>>(&mut self, r: Result<T, E>) -> Result<T, StoreError> {
        let r = r.map_err(Into::into);
        if let Err(StoreError::Db(
            sqlx::Error::Io(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::PoolClosed,
        )) = &r
        {
            *self.guard = None;
        }
        r
    }
}
