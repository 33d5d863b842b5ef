//! This broker's copy of the cluster metadata: the controller's committed image,
//! followed as a stream ([`follower`]) and read by every handler.
pub mod controller_link;
pub mod follower;
pub mod persist;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use spate_metadata::MetadataImage;
use tokio::sync::watch;

/// The latest applied metadata image, and a signal for each change.
pub struct MetadataCache {
    image: RwLock<Arc<MetadataImage>>,
    version: watch::Sender<u64>,
}

impl Default for MetadataCache {
    fn default() -> Self {
        MetadataCache {
            image: RwLock::new(Arc::new(MetadataImage::default())),
            version: watch::channel(0).0,
        }
    }
}

impl MetadataCache {
    /// The current image (cheap: shared).
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.read().clone()
    }

    /// Publishes a new image.
    pub fn publish(&self, image: Arc<MetadataImage>) {
        *self.image.write() = image;
        self.version.send_modify(|v| *v += 1);
    }

    /// How many images have been published (0: none applied yet).
    pub fn version(&self) -> u64 {
        *self.version.borrow()
    }

    /// A receiver notified on every published image.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Waits until `ready(image)` holds or `timeout` passes; returns the last image.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        ready: impl Fn(&MetadataImage) -> bool,
    ) -> Arc<MetadataImage> {
        let mut rx = self.version.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let image = self.image();
            if ready(&image) {
                return image;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => return self.image(),
            }
        }
    }
}
