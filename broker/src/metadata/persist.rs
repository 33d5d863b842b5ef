//! The broker's copy of the metadata image on disk, so a restart resumes from its last
//! applied offset: the controller then sends only what changed (or nothing), not the whole
//! image. The file is the image as a snapshot batch (the same records the controller's
//! snapshots use), written atomically; a missing or unreadable file just means "start from
//! the controller's snapshot".
use std::path::{Path, PathBuf};

use prost::Message;
use spate_metadata::MetadataImage;
use spate_proto::metadata::MetadataBatch;

const FILE: &str = "image.snapshot";

/// Where the image of a broker with data in `data_dir` lives.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("metadata")
}

/// The saved image, if there is a readable one.
pub fn load(dir: &Path) -> Option<MetadataImage> {
    let path = dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read the saved metadata image; fetching it anew");
            return None;
        }
    };
    let batch = match MetadataBatch::decode(bytes.as_slice()) {
        Ok(b) if b.snapshot => b,
        Ok(_) => return None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "saved metadata image is corrupt; fetching it anew");
            return None;
        }
    };
    let mut image = MetadataImage::default();
    let errors = image.apply_batch(&batch);
    if !errors.is_empty() {
        tracing::warn!(file = %path.display(), ?errors, "saved metadata image does not apply; fetching it anew");
        return None;
    }
    Some(image)
}

/// Saves `image` (write to a temporary file, fsync, rename, fsync the directory).
pub fn save(dir: &Path, image: &MetadataImage) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let batch = MetadataBatch {
        offset: image.offset(),
        records: image.to_records(),
        snapshot: true,
    };
    let tmp = dir.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, batch.encode_to_vec())?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join(FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_proto::metadata::{metadata_record::Record, MetadataRecord, TopicRecord};

    #[test]
    fn saved_image_loads_back_equal_and_garbage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).is_none());
        let mut image = MetadataImage::default();
        let topic = MetadataRecord {
            record: Some(Record::Topic(TopicRecord {
                name: "t".into(),
                topic_id: vec![7; 16],
            })),
        };
        image.apply(5, &topic).unwrap();
        image.advance_to(5);
        save(dir.path(), &image).unwrap();
        assert_eq!(load(dir.path()), Some(image));
        std::fs::write(dir.path().join(FILE), b"\xff\xffnot protobuf").unwrap();
        assert!(load(dir.path()).is_none());
    }
}
