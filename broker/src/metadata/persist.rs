//! The broker's copy of the metadata image on disk, so a restart resumes from its last
//! applied offset: the controller then sends only what changed (or nothing), not the whole
//! image. The file is the image as a snapshot batch (the same records the controller's
//! snapshots use), written atomically; a missing or unreadable file just means "start from
//! the controller's snapshot".
use prost::Message;
use spate_log::LogDir;
use spate_metadata::MetadataImage;
use spate_proto::metadata::MetadataBatch;

const FILE: &str = "image.snapshot";

/// Where the image of a broker with data in `data_dir` lives.
pub fn dir(data_dir: &LogDir) -> LogDir {
    data_dir.child("metadata")
}

/// The saved image, if there is a readable one.
pub fn load(dir: &LogDir) -> Option<MetadataImage> {
    let path = dir.join(FILE);
    let bytes = match dir.read_if_present(FILE) {
        Ok(Some(b)) => b,
        Ok(None) => return None,
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
pub fn save(dir: &LogDir, image: &MetadataImage) -> std::io::Result<()> {
    dir.create()?;
    let batch = MetadataBatch {
        offset: image.offset(),
        records: image.to_records(),
        snapshot: true,
    };
    dir.write_atomic(FILE, &batch.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_proto::metadata::{metadata_record::Record, MetadataRecord, TopicRecord};

    #[test]
    fn saved_image_loads_back_equal_and_garbage_is_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = LogDir::local(tmp.path());
        assert!(load(&dir).is_none());
        let mut image = MetadataImage::default();
        let topic = MetadataRecord {
            record: Some(Record::Topic(TopicRecord {
                name: "t".into(),
                topic_id: vec![7; 16],
            })),
        };
        image.apply(5, &topic).unwrap();
        image.advance_to(5);
        save(&dir, &image).unwrap();
        assert_eq!(load(&dir), Some(image));
        std::fs::write(tmp.path().join(FILE), b"\xff\xffnot protobuf").unwrap();
        assert!(load(&dir).is_none());
    }
}
