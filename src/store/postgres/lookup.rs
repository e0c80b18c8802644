//! Token lookups on PostgreSQL, coalesced. Under load the database's cost per lookup is mostly
//! per statement (a round trip, bind and executor start-up on both sides), not per row; so
//! lookups that arrive while others run are gathered and answered by one
//! `WHERE token_hash = ANY($1)`. A few workers, one connection each, share the queue: a lone
//! lookup is sent at once, and each query starts after every lookup in it was asked for, so it
//! sees every write committed before any of them (a revocation answered earlier is never
//! missed).

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::Postgres;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::conns::Dedicated;
use crate::store::records::TokenRow;
use crate::store::sql::TOKEN_COLUMNS;
use crate::store::{StoreError, TokenRecord};

/// At most this many distinct tokens per query.
const MAX_BATCH: usize = 256;
const QUEUE: usize = 8192;

type Answer = Result<Option<TokenRecord>, Arc<StoreError>>;
type Ask = (Vec<u8>, oneshot::Sender<Answer>);

pub struct Lookups {
    tx: mpsc::Sender<Ask>,
}

impl Lookups {
    /// Starts `workers` workers (one per connection slot of `conns`); they end when this is
    /// dropped.
    pub fn start(conns: Arc<Dedicated<Postgres>>, workers: usize) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..workers.max(1) {
            tokio::spawn(work(Arc::clone(&conns), Arc::clone(&rx)));
        }
        Self { tx }
    }

    pub async fn find(&self, token_hash: &[u8]) -> Result<Option<TokenRecord>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((token_hash.to_vec(), reply))
            .await
            .map_err(|_| StoreError::Corrupt("token lookups stopped".into()))?;
        match answer.await {
            Ok(Ok(r)) => Ok(r),
            // Only this token's row is unreadable; say so as such.
            Ok(Err(e)) if matches!(*e, StoreError::CorruptRecord(_)) => {
                Err(StoreError::CorruptRecord(e.to_string()))
            }
            Ok(Err(e)) => Err(StoreError::Corrupt(format!("token lookup failed: {e}"))),
            Err(_) => Err(StoreError::Corrupt("token lookups stopped".into())),
        }
    }
}

async fn work(conns: Arc<Dedicated<Postgres>>, rx: Arc<Mutex<mpsc::Receiver<Ask>>>) {
    let mut asks: Vec<Ask> = Vec::with_capacity(MAX_BATCH);
    loop {
        {
            let mut rx = rx.lock().await;
            match rx.recv().await {
                Some(a) => asks.push(a),
                None => return,
            }
            while asks.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(a) => asks.push(a),
                    Err(_) => break,
                }
            }
        }
        let mut hashes: Vec<&[u8]> = asks.iter().map(|(h, _)| h.as_slice()).collect();
        hashes.sort_unstable();
        hashes.dedup();
        match query(&conns, &hashes).await {
            Ok(found) => {
                for (hash, reply) in asks.drain(..) {
                    let _ = reply.send(found.get(&hash).cloned().transpose());
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for (_, reply) in asks.drain(..) {
                    let _ = reply.send(Err(Arc::clone(&e)));
                }
            }
        }
    }
}

async fn query(
    conns: &Dedicated<Postgres>,
    hashes: &[&[u8]],
) -> Result<HashMap<Vec<u8>, Result<TokenRecord, Arc<StoreError>>>, StoreError> {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sql = SQL
        .get_or_init(|| format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE token_hash = ANY($1)"));
    let mut lease = conns.get().await?;
    let rows = sqlx::query_as::<_, TokenRow>(sql)
        .bind(hashes)
        .fetch_all(lease.conn()?)
        .await;
    let mut found = HashMap::with_capacity(hashes.len());
    for row in lease.check(rows)? {
        // A corrupt row answers only the lookups of its own token.
        let hash = row.token_hash.clone();
        found.insert(hash, TokenRecord::try_from(row).map_err(Arc::new));
    }
    Ok(found)
}
