//! The embedded persistent store: one [redb](https://docs.rs/redb) database file.
//!
//! Each commit is one redb write transaction with `Durability::Immediate` (the RD
//! hands it every change queued while the previous commit ran: group commit): when
//! [`RegistrationStore::commit`] resolves `Ok`, the change is on disk (fsync'ed) and
//! survives a crash or `kill -9` of the process. redb recovers an uncleanly closed
//! file when it is opened again. The file is locked while open, so two RDs cannot
//! share one data directory.
//!
//! Tables: `registrations` (id → [`StoredRegistration::encode`]) and `meta`
//! (`next_id` → the lowest id never used).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, Durability, ReadableTable, TableDefinition};

use crate::store::{
    Loaded, RegistrationStore, StoreError, StoreFuture, StoreOp, StoredRegistration,
};

const REGISTRATIONS: TableDefinition<'static, u64, &'static [u8]> =
    TableDefinition::new("registrations");
const META: TableDefinition<'static, &'static str, u64> = TableDefinition::new("meta");
const NEXT_ID: &str = "next_id";

/// The memory redb may use for its page cache and write buffer, in bytes. The RD
/// reads the store only at start-up (its state is in memory), so a small cache is
/// enough; redb's own default (1 GiB) would hold a copy of the whole file in memory.
pub const CACHE_SIZE: usize = 16 * 1024 * 1024;

/// The name of the database file inside a data directory.
pub const DATABASE_FILE: &str = "registrations.redb";

fn backend(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(err.to_string())
}

/// A [`RegistrationStore`] in a redb database file.
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RedbStore {
    /// Opens (or creates) the database file `path`, recovering it if the last process
    /// using it died. Blocking: call it before serving, or from a blocking task.
    pub fn open(path: impl AsRef<Path>) -> Result<RedbStore, StoreError> {
        let path = path.as_ref().to_owned();
        let db = Database::builder()
            .set_cache_size(CACHE_SIZE)
            .create(&path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    StoreError::Open(format!("{} is in use by another process", path.display()))
                }
                other => StoreError::Open(format!("{}: {other}", path.display())),
            })?;
        // Create the tables so that readers find them.
        let txn = db.begin_write().map_err(backend)?;
        {
            txn.open_table(REGISTRATIONS).map_err(backend)?;
            txn.open_table(META).map_err(backend)?;
        }
        txn.commit().map_err(backend)?;
        Ok(RedbStore {
            db: Arc::new(db),
            path,
        })
    }

    /// Opens (or creates) [`DATABASE_FILE`] in the directory `dir`, creating the
    /// directory if needed.
    pub fn open_dir(dir: impl AsRef<Path>) -> Result<RedbStore, StoreError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Open(format!("cannot create {}: {e}", dir.display())))?;
        RedbStore::open(dir.join(DATABASE_FILE))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn load_blocking(db: &Database) -> Result<Loaded, StoreError> {
        let txn = db.begin_read().map_err(backend)?;
        let table = txn.open_table(REGISTRATIONS).map_err(backend)?;
        let meta = txn.open_table(META).map_err(backend)?;
        let mut loaded = Loaded {
            next_id: meta.get(NEXT_ID).map_err(backend)?.map_or(0, |v| v.value()),
            ..Loaded::default()
        };
        for entry in table.iter().map_err(backend)? {
            let (key, value) = entry.map_err(backend)?;
            let id = key.value();
            loaded.next_id = loaded.next_id.max(id.saturating_add(1));
            match StoredRegistration::decode(value.value()) {
                Ok(r) if r.id == id => loaded.registrations.push(r),
                Ok(_) => loaded.corrupt.push(StoreError::Corrupt {
                    id: Some(id),
                    reason: "record id does not match its key".into(),
                }),
                Err(StoreError::Corrupt { reason, .. }) => {
                    loaded.corrupt.push(StoreError::Corrupt {
                        id: Some(id),
                        reason,
                    });
                }
                Err(other) => loaded.corrupt.push(other),
            }
        }
        Ok(loaded)
    }

    fn commit_blocking(db: &Database, ops: &[StoreOp]) -> Result<(), StoreError> {
        let mut txn = db.begin_write().map_err(backend)?;
        txn.set_durability(Durability::Immediate);
        {
            let mut table = txn.open_table(REGISTRATIONS).map_err(backend)?;
            let mut meta = txn.open_table(META).map_err(backend)?;
            let mut next_id = meta.get(NEXT_ID).map_err(backend)?.map_or(0, |v| v.value());
            let before = next_id;
            for op in ops {
                match op {
                    StoreOp::Put(r) => {
                        table.insert(r.id, r.encode().as_slice()).map_err(backend)?;
                        next_id = next_id.max(r.id.saturating_add(1));
                    }
                    StoreOp::Remove(id) => {
                        table.remove(*id).map_err(backend)?;
                    }
                }
            }
            if next_id != before {
                meta.insert(NEXT_ID, next_id).map_err(backend)?;
            }
        }
        txn.commit().map_err(backend)
    }
}

impl RegistrationStore for RedbStore {
    fn load(&self) -> StoreFuture<'_, Loaded> {
        let db = Arc::clone(&self.db);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || RedbStore::load_blocking(&db))
                .await
                .map_err(backend)?
        })
    }

    fn commit(&self, ops: Vec<StoreOp>) -> StoreFuture<'_, ()> {
        let db = Arc::clone(&self.db);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || RedbStore::commit_blocking(&db, &ops))
                .await
                .map_err(backend)?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::sample;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "corium-rd-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[tokio::test]
    async fn persists_across_reopen() {
        let dir = temp_dir("reopen");
        {
            let store = RedbStore::open_dir(&dir).unwrap();
            assert_eq!(store.load().await.unwrap(), Loaded::default());
            store
                .commit(vec![StoreOp::Put(sample(1)), StoreOp::Put(sample(9))])
                .await
                .unwrap();
            store.commit(vec![StoreOp::Remove(9)]).await.unwrap();
            // A second open of the same file is refused while this one lives.
            let err = RedbStore::open_dir(&dir).unwrap_err();
            assert!(err.to_string().contains("in use"), "{err}");
        }
        let store = RedbStore::open_dir(&dir).unwrap();
        let loaded = store.load().await.unwrap();
        assert_eq!(loaded.registrations, vec![sample(1)]);
        assert_eq!(loaded.next_id, 10, "removed ids are never reused");
        assert!(loaded.corrupt.is_empty());
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn corrupt_records_are_reported_not_fatal() {
        let dir = temp_dir("corrupt");
        let store = RedbStore::open_dir(&dir).unwrap();
        store.commit(vec![StoreOp::Put(sample(2))]).await.unwrap();
        {
            let txn = store.db.begin_write().unwrap();
            {
                let mut t = txn.open_table(REGISTRATIONS).unwrap();
                t.insert(4u64, &b"\xff\x00garbage"[..]).unwrap();
                t.insert(5u64, sample(6).encode().as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        let loaded = store.load().await.unwrap();
        assert_eq!(loaded.registrations, vec![sample(2)]);
        assert_eq!(loaded.corrupt.len(), 2);
        assert_eq!(loaded.next_id, 6);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
