//! Upload metadata in a channel's stream, and the shard's media index that says which files
//! the shard's replicas must hold (see `media::replicate`).
//!
//! Messages refer to uploads through their attachments (`uploadId`, set when the send was
//! checked); a send records the message on each upload it names, a delete or purge takes it
//! off, and an upload that loses its last message is removed with its index entries, so the
//! replicas' sweeps delete the files.

use chatsdk_cluster::StoreError;

use super::{StreamReader, StreamReply, Tx};
use crate::keys::{self, get_record as get, put_record as put, StreamKeys};
use crate::kv::{Kv, KvRead};
use crate::media::{self, Upload, UploadStatus};
use crate::model::Message;

impl<K: Kv> Tx<'_, K> {
    fn index_files(&mut self, upload: &Upload, present: bool) {
        for hash in upload.hashes() {
            let key = keys::media_ref(hash, self.sk.0, &upload.id);
            if present {
                self.kv.put(&key, b"");
            } else {
                self.kv.delete(&key);
            }
        }
    }

    /// Stores an upload's metadata (new or changed); the messages it is attached to stay.
    pub(super) fn put_upload(&mut self, mut upload: Upload) -> Result<StreamReply, StoreError> {
        let key = self.sk.upload(&upload.id);
        if let Some(old) = get::<Upload>(self.kv, &key)? {
            upload.attached_to = old.attached_to.clone();
            self.index_files(&old, false);
        }
        self.index_files(&upload, true);
        put(self.kv, &key, &upload)?;
        Ok(StreamReply::Done)
    }

    /// Removes an upload and its index entries.
    pub(super) fn drop_upload(&mut self, id: &str) -> Result<StreamReply, StoreError> {
        let key = self.sk.upload(id);
        match get::<Upload>(self.kv, &key)? {
            Some(old) => {
                self.index_files(&old, false);
                self.kv.delete(&key);
                Ok(StreamReply::Done)
            }
            None => Ok(StreamReply::NotFound("upload".into())),
        }
    }

    /// Records a new message on the completed uploads its attachments name.
    pub(super) fn attach_uploads(&mut self, message: &Message) -> Result<(), StoreError> {
        for id in media::attached_upload_ids(&message.attachments.0) {
            let key = self.sk.upload(&id);
            if let Some(mut u) = get::<Upload>(self.kv, &key)? {
                if u.status == UploadStatus::Completed && !u.attached_to.contains(&message.id) {
                    u.attached_to.push(message.id.clone());
                    put(self.kv, &key, &u)?;
                }
            }
        }
        Ok(())
    }

    /// Takes a deleted message off its uploads; an upload left with no message goes.
    pub(super) fn detach_uploads(&mut self, message: &Message) -> Result<(), StoreError> {
        for id in media::attached_upload_ids(&message.attachments.0) {
            let key = self.sk.upload(&id);
            let Some(mut u) = get::<Upload>(self.kv, &key)? else {
                continue;
            };
            let before = u.attached_to.len();
            u.attached_to.retain(|m| m != &message.id);
            if u.attached_to.is_empty() && before > 0 {
                self.drop_upload(&id)?;
            } else if u.attached_to.len() != before {
                put(self.kv, &key, &u)?;
            }
        }
        Ok(())
    }

    /// Removes the index entries of every upload of the stream (the stream is being dropped).
    pub(super) fn unindex_uploads(&mut self) -> Result<(), StoreError> {
        for (k, v) in self.kv.scan_prefix(&self.sk.uploads())? {
            let u: Upload = keys::decode_at(&k, &v)?;
            self.index_files(&u, false);
        }
        Ok(())
    }
}

impl<R: KvRead> StreamReader<R> {
    /// An upload of the stream.
    pub fn upload(&self, stream: &str, id: &str) -> Result<Option<Upload>, StoreError> {
        self.get(&StreamKeys(stream).upload(id))
    }

    /// Completed uploads of the stream, newest first, of `kind` (`image`, `video`, `file`)
    /// when given.
    pub fn uploads(
        &self,
        stream: &str,
        kind: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Upload>, StoreError> {
        let mut all = Vec::new();
        for (k, v) in self.reader.scan_prefix(&StreamKeys(stream).uploads())? {
            let u: Upload = keys::decode_at(&k, &v)?;
            if u.status == UploadStatus::Completed && kind.is_none_or(|k| u.kind() == k) {
                all.push(u);
            }
        }
        all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(all.into_iter().skip(offset).take(limit).collect())
    }
}
