//! Durable openraft (0.9, storage-v2) storage on top of a single redb file.
//!
//! [`open`] returns the two storage halves openraft needs, [`LogStore`] and
//! [`StateMachineStore`], sharing one [`redb::Database`]. Everything openraft
//! persists lives in that file:
//!
//! * table `raft_log` (`u64` index -> JSON [`openraft::Entry`]);
//! * table `raft_meta` (`&str` -> JSON): `vote`, `committed`, `last_purged`;
//! * table `state_machine` (`&str` -> bytes): `applied` (JSON of last applied
//!   log id, last membership and the serialized state `S`), `snapshot_meta`
//!   (JSON) and `snapshot_data` (raw snapshot bytes).
//!
//! Every mutating call commits its own redb write transaction (redb's default
//! durability, i.e. fsync on commit) before returning, and `append` reports
//! the flush to openraft only after that commit. Each apply batch, and each
//! installed snapshot, is written in a single transaction, so the state and
//! its last-applied id can never disagree after a crash.
//!
//! redb calls are blocking; they are made directly from the async methods
//! (as openraft's own rocksdb example does), so run the node on a
//! multi-threaded tokio runtime.

use std::fmt;
use std::io::Cursor;
use std::marker::PhantomData;
use std::ops::Bound;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::sync::RwLock;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use openraft::storage::LogFlushed;
use openraft::storage::RaftLogStorage;
use openraft::storage::RaftStateMachine;
use openraft::AnyError;
use openraft::Entry;
use openraft::EntryPayload;
use openraft::LogId;
use openraft::LogState;
use openraft::OptionalSend;
use openraft::RaftLogReader;
use openraft::RaftSnapshotBuilder;
use openraft::RaftTypeConfig;
use openraft::Snapshot;
use openraft::SnapshotMeta;
use openraft::StorageError;
use openraft::StorageIOError;
use openraft::StoredMembership;
use openraft::Vote;
use redb::Database;
use redb::ReadableTable;
use redb::TableDefinition;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;

const LOG_TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
const SM_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("state_machine");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";
const KEY_APPLIED: &str = "applied";
const KEY_SNAPSHOT_META: &str = "snapshot_meta";
const KEY_SNAPSHOT_DATA: &str = "snapshot_data";

/// The replicated state machine the store drives. Implemented by gossipnet's
/// membership directory; your tests use a toy one.
pub trait Replicated:
    Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// = `C::D` of the TypeConfig.
    type Command: Send + Sync + 'static;
    /// = `C::R` of the TypeConfig. `Default` is the response returned to
    /// openraft for blank and membership entries; `Clone` lets the store hand
    /// one copy to openraft and one to the observer.
    type Response: Clone + Default + Send + Sync + 'static;
    /// Applies one committed command. Must be deterministic.
    fn apply(&mut self, command: &Self::Command) -> Self::Response;

    /// The command, if any, that stands for a Raft membership entry (given
    /// as openraft serializes its `Membership`): the store applies it at
    /// the membership entry's place in the log, so that the state machine
    /// can follow the membership deterministically. Default: none.
    fn membership_command(_membership: serde_json::Value) -> Option<Self::Command> {
        None
    }
}

/// What the state machine store reports to the node after applying.
pub enum Applied<S: Replicated> {
    /// A normal entry was applied: its log index, the command and the response.
    Entry {
        index: u64,
        command: S::Command,
        response: S::Response,
    },
    /// A snapshot replaced the whole state (catch-up); `state` is the new state.
    /// `last_index` is 0 if the snapshot covers no log entry.
    Snapshot { last_index: u64, state: S },
}

impl<S> fmt::Debug for Applied<S>
where
    S: Replicated + fmt::Debug,
    S::Command: fmt::Debug,
    S::Response: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Applied::Entry {
                index,
                command,
                response,
            } => f
                .debug_struct("Entry")
                .field("index", index)
                .field("command", command)
                .field("response", response)
                .finish(),
            Applied::Snapshot { last_index, state } => f
                .debug_struct("Snapshot")
                .field("last_index", last_index)
                .field("state", state)
                .finish(),
        }
    }
}

/// Failure to open the store. In every case nothing was opened and no store
/// handle exists. Sources are boxed to keep `Result<_, StoreError>` small.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The redb file could not be created or opened (I/O error, not a redb
    /// file, or already open in this process); nothing was opened.
    #[error("cannot open redb database: {0}")]
    Database(#[source] Box<redb::DatabaseError>),
    /// A redb transaction could not be started while initialising the file;
    /// nothing was opened.
    #[error("cannot begin redb transaction: {0}")]
    Transaction(#[source] Box<redb::TransactionError>),
    /// A table could not be created or opened (e.g. wrong key/value type);
    /// nothing was opened.
    #[error("cannot open redb table: {0}")]
    Table(#[source] Box<redb::TableError>),
    /// redb failed while reading the stored state; nothing was opened.
    #[error("redb storage error: {0}")]
    Storage(#[source] Box<redb::StorageError>),
    /// Creating the tables could not be committed; nothing was opened.
    #[error("cannot commit redb transaction: {0}")]
    Commit(#[source] Box<redb::CommitError>),
    /// The stored state machine record could not be decoded; nothing was opened.
    #[error("cannot decode stored state machine: {0}")]
    Decode(#[source] Box<serde_json::Error>),
}

macro_rules! store_error_from {
    ($($variant:ident => $ty:ty),* $(,)?) => {
        $(
            impl From<$ty> for StoreError {
                fn from(e: $ty) -> Self {
                    StoreError::$variant(Box::new(e))
                }
            }
        )*
    };
}

store_error_from! {
    Database => redb::DatabaseError,
    Transaction => redb::TransactionError,
    Table => redb::TableError,
    Storage => redb::StorageError,
    Commit => redb::CommitError,
    Decode => serde_json::Error,
}

/// Internal error of one storage operation (any redb or serde_json error),
/// converted to openraft's `StorageIOError` at the trait boundary.
#[derive(Debug)]
struct DbError(Box<dyn std::error::Error + Send + Sync + 'static>);

macro_rules! db_error_from {
    ($($ty:ty),* $(,)?) => {
        $(
            impl From<$ty> for DbError {
                fn from(e: $ty) -> Self {
                    DbError(Box::new(e))
                }
            }
        )*
    };
}

db_error_from!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    serde_json::Error,
);

fn any(e: DbError) -> AnyError {
    AnyError::from_dyn(&*e.0, None)
}

/// Applied state of the state machine as stored under `applied`, and as
/// serialised into snapshots.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
struct AppliedRecord<C: RaftTypeConfig, S: Replicated> {
    last_applied: Option<LogId<C::NodeId>>,
    last_membership: StoredMembership<C::NodeId, C::Node>,
    state: S,
}

impl<C: RaftTypeConfig, S: Replicated> Clone for AppliedRecord<C, S> {
    fn clone(&self) -> Self {
        Self {
            last_applied: self.last_applied.clone(),
            last_membership: self.last_membership.clone(),
            state: self.state.clone(),
        }
    }
}

impl<C: RaftTypeConfig, S: Replicated> Default for AppliedRecord<C, S> {
    fn default() -> Self {
        Self {
            last_applied: None,
            last_membership: StoredMembership::default(),
            state: S::default(),
        }
    }
}

fn get_json<T, K>(table: &T, key: &str) -> Result<Option<K>, DbError>
where
    T: ReadableTable<&'static str, &'static [u8]>,
    K: DeserializeOwned,
{
    match table.get(key)? {
        Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
        None => Ok(None),
    }
}

fn put_json<T: Serialize>(
    table: &mut redb::Table<&'static str, &'static [u8]>,
    key: &str,
    value: &T,
) -> Result<(), DbError> {
    let bytes = serde_json::to_vec(value)?;
    table.insert(key, bytes.as_slice())?;
    Ok(())
}

/// Opens (creating if missing) the redb database at `path` and returns the two
/// openraft v2 storage halves that share it. `observer` receives every
/// [`Applied`], in order, from the state machine's apply/install paths (send
/// errors are ignored).
#[allow(clippy::type_complexity)]
pub fn open<C, S>(
    path: &Path,
    observer: Option<UnboundedSender<Applied<S>>>,
) -> Result<(LogStore<C>, StateMachineStore<C, S>), StoreError>
where
    C: RaftTypeConfig<
        SnapshotData = Cursor<Vec<u8>>,
        D = S::Command,
        R = S::Response,
        Entry = Entry<C>,
    >,
    S: Replicated,
{
    let db = Database::create(path)?;

    // Make sure all tables exist, so read transactions can always open them.
    let txn = db.begin_write()?;
    txn.open_table(LOG_TABLE)?;
    txn.open_table(META_TABLE)?;
    txn.open_table(SM_TABLE)?;
    txn.commit()?;

    let applied: AppliedRecord<C, S> = {
        let txn = db.begin_read()?;
        let table = txn.open_table(SM_TABLE)?;
        match table.get(KEY_APPLIED)? {
            Some(v) => serde_json::from_slice(v.value())?,
            None => AppliedRecord::default(),
        }
    };

    let db = Arc::new(db);
    let log = LogStore {
        db: db.clone(),
        _c: PhantomData,
    };
    let sm = StateMachineStore {
        db,
        shared: Arc::new(SmShared {
            gate: Mutex::new(()),
            cache: RwLock::new(applied),
        }),
        observer,
    };
    Ok((log, sm))
}

// ---------------------------------------------------------------------------
// Log store
// ---------------------------------------------------------------------------

/// The raft log, vote, committed id and purge marker, stored in redb.
pub struct LogStore<C> {
    db: Arc<Database>,
    _c: PhantomData<fn() -> C>,
}

impl<C> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        Self {
            db: self.db.clone(),
            _c: PhantomData,
        }
    }
}

impl<C> fmt::Debug for LogStore<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl<C> LogStore<C>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
{
    fn read_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, DbError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(META_TABLE)?;
        get_json(&table, key)
    }

    fn write_meta<T: Serialize>(&self, key: &str, value: &T) -> Result<(), DbError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(META_TABLE)?;
            put_json(&mut table, key, value)?;
        }
        txn.commit()?;
        Ok(())
    }

    fn read_range(&self, range: (Bound<u64>, Bound<u64>)) -> Result<Vec<Entry<C>>, DbError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LOG_TABLE)?;
        let mut out = Vec::new();
        for item in table.range::<u64>(range)? {
            let (_, v) = item?;
            out.push(serde_json::from_slice(v.value())?);
        }
        Ok(out)
    }

    fn log_state(&self) -> Result<LogState<C>, DbError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META_TABLE)?;
        let last_purged: Option<LogId<C::NodeId>> = get_json(&meta, KEY_LAST_PURGED)?;
        let log = txn.open_table(LOG_TABLE)?;
        let last_in_log = match log.last()? {
            Some((_, v)) => Some(serde_json::from_slice::<Entry<C>>(v.value())?.log_id),
            None => None,
        };
        Ok(LogState {
            last_log_id: last_in_log.or_else(|| last_purged.clone()),
            last_purged_log_id: last_purged,
        })
    }

    fn append_entries<I: IntoIterator<Item = Entry<C>>>(&self, entries: I) -> Result<(), DbError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(LOG_TABLE)?;
            for entry in entries {
                let bytes = serde_json::to_vec(&entry)?;
                table.insert(entry.log_id.index, bytes.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn truncate_from(&self, index: u64) -> Result<(), DbError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(LOG_TABLE)?;
            table.retain_in(index.., |_, _| false)?;
        }
        txn.commit()?;
        Ok(())
    }

    fn purge_upto(&self, log_id: &LogId<C::NodeId>) -> Result<(), DbError> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META_TABLE)?;
            put_json(&mut meta, KEY_LAST_PURGED, log_id)?;
            let mut table = txn.open_table(LOG_TABLE)?;
            table.retain_in(..=log_id.index, |_, _| false)?;
        }
        txn.commit()?;
        Ok(())
    }
}

impl<C> RaftLogReader<C> for LogStore<C>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        self.read_range(bounds)
            .map_err(|e| StorageIOError::read_logs(any(e)).into())
    }
}

impl<C> RaftLogStorage<C> for LogStore<C>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<C::NodeId>> {
        self.log_state()
            .map_err(|e| StorageIOError::read_logs(any(e)).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        self.write_meta(KEY_VOTE, vote)
            .map_err(|e| StorageIOError::write_vote(any(e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        self.read_meta(KEY_VOTE)
            .map_err(|e| StorageIOError::read_vote(any(e)).into())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<C::NodeId>>,
    ) -> Result<(), StorageError<C::NodeId>> {
        self.write_meta(KEY_COMMITTED, &committed)
            .map_err(|e| StorageIOError::write(any(e)).into())
    }

    async fn read_committed(
        &mut self,
    ) -> Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        // The key holds a JSON `Option`, so flatten "absent" and "null".
        self.read_meta::<Option<LogId<C::NodeId>>>(KEY_COMMITTED)
            .map(Option::flatten)
            .map_err(|e| StorageIOError::read(any(e)).into())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> Result<(), StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        match self.append_entries(entries) {
            Ok(()) => {
                // The write transaction has committed: the entries are durable.
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = StorageIOError::write_logs(any(e));
                callback.log_io_completed(Err(std::io::Error::other(err.to_string())));
                Err(err.into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        self.truncate_from(log_id.index)
            .map_err(|e| StorageIOError::write_logs(any(e)).into())
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        self.purge_upto(&log_id)
            .map_err(|e| StorageIOError::write_logs(any(e)).into())
    }
}

// ---------------------------------------------------------------------------
// State machine store
// ---------------------------------------------------------------------------

/// Snapshot meta and data as stored in the `state_machine` table.
type StoredSnapshot<C> = (
    SnapshotMeta<<C as RaftTypeConfig>::NodeId, <C as RaftTypeConfig>::Node>,
    Vec<u8>,
);

struct SmShared<C: RaftTypeConfig, S: Replicated> {
    /// Serialises every writer (apply, install, build) across clones, so the
    /// cache, the redb record and the observer stream advance in one order.
    gate: Mutex<()>,
    /// In-memory copy of the committed `applied` record. Replaced only after
    /// the redb transaction holding the same value has committed.
    cache: RwLock<AppliedRecord<C, S>>,
}

/// The applied state machine (`S`, last applied id, last membership) and the
/// current snapshot, stored in redb and cached in memory.
pub struct StateMachineStore<C: RaftTypeConfig, S: Replicated> {
    db: Arc<Database>,
    shared: Arc<SmShared<C, S>>,
    observer: Option<UnboundedSender<Applied<S>>>,
}

impl<C: RaftTypeConfig, S: Replicated> Clone for StateMachineStore<C, S> {
    fn clone(&self) -> Self {
        Self {
            db: self.db.clone(),
            shared: self.shared.clone(),
            observer: self.observer.clone(),
        }
    }
}

impl<C: RaftTypeConfig, S: Replicated> fmt::Debug for StateMachineStore<C, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateMachineStore")
            .field("last_applied_index", &self.last_applied_index())
            .finish_non_exhaustive()
    }
}

impl<C: RaftTypeConfig, S: Replicated> StateMachineStore<C, S> {
    /// A copy of the current applied state, for read-only views (status, peer lists).
    pub fn state(&self) -> S {
        self.read_cache().state.clone()
    }

    /// Last applied log index, if any.
    pub fn last_applied_index(&self) -> Option<u64> {
        self.read_cache().last_applied.as_ref().map(|id| id.index)
    }

    // Poisoning is recovered from: the cache is only ever replaced wholesale
    // by an already-committed value, so it is never half-updated.
    fn read_cache(&self) -> std::sync::RwLockReadGuard<'_, AppliedRecord<C, S>> {
        self.shared.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    fn replace_cache(&self, record: AppliedRecord<C, S>) {
        *self.shared.cache.write().unwrap_or_else(|e| e.into_inner()) = record;
    }

    fn lock_gate(&self) -> MutexGuard<'_, ()> {
        self.shared.gate.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn notify(&self, event: Applied<S>) {
        if let Some(tx) = &self.observer {
            let _ = tx.send(event);
        }
    }

    fn persist_applied(&self, record: &AppliedRecord<C, S>) -> Result<(), DbError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(SM_TABLE)?;
            put_json(&mut table, KEY_APPLIED, record)?;
        }
        txn.commit()?;
        Ok(())
    }

    fn read_snapshot(&self) -> Result<Option<StoredSnapshot<C>>, DbError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SM_TABLE)?;
        let Some(meta) = get_json(&table, KEY_SNAPSHOT_META)? else {
            return Ok(None);
        };
        let data = table
            .get(KEY_SNAPSHOT_DATA)?
            .map(|v| v.value().to_vec())
            .unwrap_or_default();
        Ok(Some((meta, data)))
    }
}

fn write_snapshot<C: RaftTypeConfig>(
    table: &mut redb::Table<&'static str, &'static [u8]>,
    meta: &SnapshotMeta<C::NodeId, C::Node>,
    data: &[u8],
) -> Result<(), DbError> {
    put_json(table, KEY_SNAPSHOT_META, meta)?;
    table.insert(KEY_SNAPSHOT_DATA, data)?;
    Ok(())
}

impl<C, S> RaftSnapshotBuilder<C> for StateMachineStore<C, S>
where
    C: RaftTypeConfig<
        SnapshotData = Cursor<Vec<u8>>,
        D = S::Command,
        R = S::Response,
        Entry = Entry<C>,
    >,
    S: Replicated,
{
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, StorageError<C::NodeId>> {
        let _gate = self.lock_gate();
        let record = self.read_cache().clone();

        let data = serde_json::to_vec(&record)
            .map_err(|e| StorageIOError::write_snapshot(None, any(e.into())))?;

        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let snapshot_id = match &record.last_applied {
            Some(id) => format!("{}-{}-{}-{nanos}", id.leader_id, id.index, data.len()),
            None => format!("none-{nanos}"),
        };
        let meta = SnapshotMeta {
            last_log_id: record.last_applied.clone(),
            last_membership: record.last_membership.clone(),
            snapshot_id,
        };

        let store = || -> Result<(), DbError> {
            let txn = self.db.begin_write()?;
            {
                let mut table = txn.open_table(SM_TABLE)?;
                write_snapshot::<C>(&mut table, &meta, &data)?;
            }
            txn.commit()?;
            Ok(())
        };
        store().map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), any(e)))?;

        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl<C, S> RaftStateMachine<C> for StateMachineStore<C, S>
where
    C: RaftTypeConfig<
        SnapshotData = Cursor<Vec<u8>>,
        D = S::Command,
        R = S::Response,
        Entry = Entry<C>,
    >,
    S: Replicated,
{
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<
        (
            Option<LogId<C::NodeId>>,
            StoredMembership<C::NodeId, C::Node>,
        ),
        StorageError<C::NodeId>,
    > {
        let cache = self.read_cache();
        Ok((cache.last_applied.clone(), cache.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<C::R>, StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let _gate = self.lock_gate();
        // Work on a copy; it becomes visible only once it is durable.
        let mut work = self.read_cache().clone();
        let mut responses = Vec::new();
        let mut events = Vec::new();

        for entry in entries {
            work.last_applied = Some(entry.log_id.clone());
            let command = match entry.payload {
                EntryPayload::Blank => None,
                EntryPayload::Normal(command) => Some(command),
                EntryPayload::Membership(membership) => {
                    let command = serde_json::to_value(&membership)
                        .ok()
                        .and_then(S::membership_command);
                    work.last_membership =
                        StoredMembership::new(Some(entry.log_id.clone()), membership);
                    command
                }
            };
            let Some(command) = command else {
                responses.push(S::Response::default());
                continue;
            };
            let response = work.state.apply(&command);
            if self.observer.is_some() {
                events.push(Applied::Entry {
                    index: entry.log_id.index,
                    command,
                    response: response.clone(),
                });
            }
            responses.push(response);
        }

        if responses.is_empty() {
            return Ok(responses);
        }

        self.persist_applied(&work)
            .map_err(|e| StorageIOError::write_state_machine(any(e)))?;
        self.replace_cache(work);
        for event in events {
            self.notify(event);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<C::SnapshotData>, StorageError<C::NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<C::NodeId, C::Node>,
        snapshot: Box<C::SnapshotData>,
    ) -> Result<(), StorageError<C::NodeId>> {
        let data = snapshot.into_inner();
        let sig = || Some(meta.signature());

        let decoded: AppliedRecord<C, S> = serde_json::from_slice(&data)
            .map_err(|e| StorageIOError::read_snapshot(sig(), any(e.into())))?;
        // The meta is authoritative for what the snapshot covers.
        let record = AppliedRecord::<C, S> {
            last_applied: meta.last_log_id.clone(),
            last_membership: meta.last_membership.clone(),
            state: decoded.state,
        };

        let _gate = self.lock_gate();
        let store = || -> Result<(), DbError> {
            let txn = self.db.begin_write()?;
            {
                let mut table = txn.open_table(SM_TABLE)?;
                put_json(&mut table, KEY_APPLIED, &record)?;
                write_snapshot::<C>(&mut table, meta, &data)?;
            }
            txn.commit()?;
            Ok(())
        };
        store().map_err(|e| StorageIOError::write_snapshot(sig(), any(e)))?;

        let state = self.observer.as_ref().map(|_| record.state.clone());
        self.replace_cache(record);
        if let Some(state) = state {
            self.notify(Applied::Snapshot {
                last_index: meta.last_log_id.as_ref().map_or(0, |id| id.index),
                state,
            });
        }
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<C>>, StorageError<C::NodeId>> {
        let stored = self
            .read_snapshot()
            .map_err(|e| StorageIOError::read_snapshot(None, any(e)))?;
        Ok(stored.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::sync::Mutex;
    use std::time::Duration;

    use openraft::error::InstallSnapshotError;
    use openraft::error::RPCError;
    use openraft::error::RaftError;
    use openraft::error::RemoteError;
    use openraft::error::Unreachable;
    use openraft::network::RPCOption;
    use openraft::raft::AppendEntriesRequest;
    use openraft::raft::AppendEntriesResponse;
    use openraft::raft::InstallSnapshotRequest;
    use openraft::raft::InstallSnapshotResponse;
    use openraft::raft::VoteRequest;
    use openraft::raft::VoteResponse;
    use openraft::storage::RaftLogStorageExt;
    use openraft::testing::StoreBuilder;
    use openraft::testing::Suite;
    use openraft::BasicNode;
    use openraft::CommittedLeaderId;
    use openraft::Config;
    use openraft::Membership;
    use openraft::Raft;
    use openraft::RaftNetwork;
    use openraft::RaftNetworkFactory;
    use tempfile::TempDir;
    use tokio::sync::mpsc::unbounded_channel;

    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub enum Cmd {
        Set { key: String, value: String },
        Del { key: String },
    }

    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Resp {
        pub previous: Option<String>,
    }

    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Kv {
        map: BTreeMap<String, String>,
    }

    impl Replicated for Kv {
        type Command = Cmd;
        type Response = Resp;

        fn apply(&mut self, command: &Cmd) -> Resp {
            let previous = match command {
                Cmd::Set { key, value } => self.map.insert(key.clone(), value.clone()),
                Cmd::Del { key } => self.map.remove(key),
            };
            Resp { previous }
        }
    }

    openraft::declare_raft_types!(
        pub TestConfig:
            D = Cmd,
            R = Resp,
    );

    type Ls = LogStore<TestConfig>;
    type Sm = StateMachineStore<TestConfig, Kv>;

    fn set(key: &str, value: &str) -> Cmd {
        Cmd::Set {
            key: key.to_string(),
            value: value.to_string(),
        }
    }

    fn log_id(term: u64, index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn normal(term: u64, index: u64, cmd: Cmd) -> Entry<TestConfig> {
        Entry {
            log_id: log_id(term, index),
            payload: EntryPayload::Normal(cmd),
        }
    }

    fn membership(term: u64, index: u64, voters: &[u64]) -> Entry<TestConfig> {
        let voters: BTreeSet<u64> = voters.iter().copied().collect();
        Entry {
            log_id: log_id(term, index),
            payload: EntryPayload::Membership(Membership::new(vec![voters], None)),
        }
    }

    fn open_at(dir: &TempDir, observer: Option<UnboundedSender<Applied<Kv>>>) -> (Ls, Sm) {
        open::<TestConfig, Kv>(&dir.path().join("raft.redb"), observer).expect("open store")
    }

    struct TempStoreBuilder;

    impl StoreBuilder<TestConfig, Ls, Sm, TempDir> for TempStoreBuilder {
        async fn build(&self) -> Result<(TempDir, Ls, Sm), StorageError<u64>> {
            let dir = tempfile::tempdir().expect("tempdir");
            let (log, sm) = open_at(&dir, None);
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(TempStoreBuilder).expect("openraft storage suite");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn everything_survives_reopening_the_file() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir().expect("tempdir");

        let (mut log, mut sm) = open_at(&dir, None);
        let entries = vec![
            membership(2, 1, &[1, 2, 3]),
            normal(2, 2, set("a", "1")),
            normal(2, 3, set("b", "2")),
            normal(3, 4, set("a", "3")),
            normal(3, 5, Cmd::Del { key: "b".into() }),
            normal(3, 6, set("c", "4")),
        ];
        log.save_vote(&Vote::new_committed(3, 1)).await?;
        log.blocking_append(entries.clone()).await?;
        log.save_committed(Some(log_id(3, 5))).await?;
        log.purge(log_id(2, 1)).await?;
        sm.apply(entries[..3].to_vec()).await?;
        let built = sm.get_snapshot_builder().await.build_snapshot().await?;
        sm.apply(entries[3..5].to_vec()).await?;

        let vote = log.read_vote().await?;
        let committed = log.read_committed().await?;
        let log_state = log.get_log_state().await?;
        let stored = log.try_get_log_entries(..).await?;
        let applied = sm.applied_state().await?;
        let state = sm.state();
        let last_index = sm.last_applied_index();
        let snap = sm.get_current_snapshot().await?.expect("snapshot");
        assert_eq!(stored, entries[1..].to_vec());
        assert_eq!(last_index, Some(5));
        assert_eq!(snap.meta, built.meta);
        assert_eq!(snap.meta.last_log_id, Some(log_id(2, 3)));
        drop((log, sm));

        let (mut log, mut sm) = open_at(&dir, None);
        assert_eq!(log.read_vote().await?, vote);
        assert_eq!(vote, Some(Vote::new_committed(3, 1)));
        assert_eq!(log.read_committed().await?, committed);
        assert_eq!(committed, Some(log_id(3, 5)));
        assert_eq!(log.get_log_state().await?, log_state);
        assert_eq!(log_state.last_purged_log_id, Some(log_id(2, 1)));
        assert_eq!(log.try_get_log_entries(..).await?, stored);
        assert_eq!(sm.applied_state().await?, applied);
        assert_eq!(sm.state(), state);
        assert_eq!(sm.last_applied_index(), last_index);
        let reopened = sm.get_current_snapshot().await?.expect("snapshot");
        assert_eq!(reopened.meta, snap.meta);
        assert_eq!(reopened.snapshot.into_inner(), snap.snapshot.into_inner());

        // The reopened store keeps working from where it stopped.
        sm.apply(entries[5..].to_vec()).await?;
        assert_eq!(sm.last_applied_index(), Some(6));
        assert_eq!(sm.state().map.get("c").map(String::as_str), Some("4"));
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn observer_sees_every_applied_entry_in_order() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, mut rx) = unbounded_channel();
        let (_log, mut sm) = open_at(&dir, Some(tx));

        let blank = Entry {
            log_id: log_id(1, 1),
            payload: EntryPayload::Blank,
        };
        sm.apply(vec![
            blank,
            normal(1, 2, set("a", "1")),
            membership(1, 3, &[1]),
            normal(1, 4, set("a", "2")),
        ])
        .await?;
        let responses = sm
            .apply(vec![normal(1, 5, Cmd::Del { key: "a".into() })])
            .await?;
        assert_eq!(
            responses,
            vec![Resp {
                previous: Some("2".into())
            }]
        );

        let mut seen = Vec::new();
        while let Ok(event) = rx.try_recv() {
            match event {
                Applied::Entry {
                    index,
                    command,
                    response,
                } => seen.push((index, command, response)),
                Applied::Snapshot { .. } => panic!("unexpected snapshot event"),
            }
        }
        assert_eq!(
            seen,
            vec![
                (2, set("a", "1"), Resp { previous: None }),
                (
                    4,
                    set("a", "2"),
                    Resp {
                        previous: Some("1".into())
                    }
                ),
                (
                    5,
                    Cmd::Del { key: "a".into() },
                    Resp {
                        previous: Some("2".into())
                    }
                ),
            ]
        );

        // Installing a snapshot from another store is reported as one event.
        let other_dir = tempfile::tempdir().expect("tempdir");
        let (_other_log, mut other) = open_at(&other_dir, None);
        other
            .apply(vec![membership(2, 1, &[1]), normal(2, 7, set("z", "9"))])
            .await?;
        let snap = other.get_snapshot_builder().await.build_snapshot().await?;
        sm.install_snapshot(&snap.meta, snap.snapshot).await?;
        match rx.try_recv().expect("snapshot event") {
            Applied::Snapshot { last_index, state } => {
                assert_eq!(last_index, 7);
                assert_eq!(state, other.state());
            }
            Applied::Entry { .. } => panic!("expected a snapshot event"),
        }
        assert!(rx.try_recv().is_err());
        assert_eq!(sm.state(), other.state());
        assert_eq!(sm.last_applied_index(), Some(7));
        Ok(())
    }

    // ----- three nodes in one process -----

    #[derive(Clone, Default)]
    struct Router {
        nodes: Arc<Mutex<BTreeMap<u64, Raft<TestConfig>>>>,
    }

    impl Router {
        fn get(&self, target: u64) -> Option<Raft<TestConfig>> {
            self.nodes.lock().unwrap().get(&target).cloned()
        }
    }

    fn unreachable_node<E: std::error::Error>(target: u64) -> RPCError<u64, BasicNode, E> {
        let e = std::io::Error::other(format!("node {target} not found"));
        RPCError::Unreachable(Unreachable::new(&e))
    }

    struct Conn {
        target: u64,
        router: Router,
    }

    impl RaftNetworkFactory<TestConfig> for Router {
        type Network = Conn;

        async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Conn {
            Conn {
                target,
                router: self.clone(),
            }
        }
    }

    impl RaftNetwork<TestConfig> for Conn {
        async fn append_entries(
            &mut self,
            rpc: AppendEntriesRequest<TestConfig>,
            _option: RPCOption,
        ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
            let Some(raft) = self.router.get(self.target) else {
                return Err(unreachable_node(self.target));
            };
            raft.append_entries(rpc)
                .await
                .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
        }

        async fn install_snapshot(
            &mut self,
            rpc: InstallSnapshotRequest<TestConfig>,
            _option: RPCOption,
        ) -> Result<
            InstallSnapshotResponse<u64>,
            RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
        > {
            let Some(raft) = self.router.get(self.target) else {
                return Err(unreachable_node(self.target));
            };
            raft.install_snapshot(rpc)
                .await
                .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
        }

        async fn vote(
            &mut self,
            rpc: VoteRequest<u64>,
            _option: RPCOption,
        ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
            let Some(raft) = self.router.get(self.target) else {
                return Err(unreachable_node(self.target));
            };
            raft.vote(rpc)
                .await
                .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn three_nodes_converge() {
        let config = Arc::new(
            Config {
                heartbeat_interval: 50,
                election_timeout_min: 200,
                election_timeout_max: 400,
                ..Default::default()
            }
            .validate()
            .expect("config"),
        );
        let router = Router::default();
        let mut dirs = Vec::new();
        let mut machines = BTreeMap::new();
        for id in 1..=3u64 {
            let dir = tempfile::tempdir().expect("tempdir");
            let (log, sm) = open_at(&dir, None);
            let raft = Raft::new(id, config.clone(), router.clone(), log, sm.clone())
                .await
                .expect("raft");
            router.nodes.lock().unwrap().insert(id, raft);
            machines.insert(id, sm);
            dirs.push(dir);
        }
        let rafts: BTreeMap<u64, Raft<TestConfig>> = router.nodes.lock().unwrap().clone();

        let members: BTreeMap<u64, BasicNode> =
            (1..=3).map(|id| (id, BasicNode::default())).collect();
        rafts[&1].initialize(members).await.expect("initialize");

        let leader = rafts[&1]
            .wait(Some(Duration::from_secs(10)))
            .metrics(|m| m.current_leader.is_some(), "a leader is elected")
            .await
            .expect("leader")
            .current_leader
            .expect("leader id");

        for i in 0..5 {
            rafts[&leader]
                .client_write(set(&format!("k{i}"), &i.to_string()))
                .await
                .expect("client_write");
        }
        let target = machines[&leader]
            .last_applied_index()
            .expect("leader applied");

        for (id, raft) in &rafts {
            raft.wait(Some(Duration::from_secs(10)))
                .applied_index_at_least(Some(target), "follower catches up")
                .await
                .unwrap_or_else(|e| panic!("node {id}: {e}"));
        }
        let expected = machines[&leader].state();
        assert_eq!(expected.map.len(), 5);
        for (id, sm) in &machines {
            assert_eq!(sm.state(), expected, "node {id} diverged");
            assert_eq!(sm.last_applied_index(), Some(target));
        }
        for raft in rafts.values() {
            raft.shutdown().await.expect("shutdown");
        }
    }
}
