//! Compressing records again after the log cleaner drops some of them: the kept records
//! are written with the batch's own codec, in the framing Kafka's Java client writes
//! (gzip member, lz4 frame, zstd frame, xerial-framed snappy), which every client reads.
use std::io::Write;

use super::decompress::{GZIP, LZ4, SNAPPY, XERIAL_HEADER_LEN, XERIAL_MAGIC, ZSTD};
use super::error::LogError;

/// Input bytes per xerial snappy block (the Java client's block size).
const SNAPPY_BLOCK: usize = 32 * 1024;

/// `data` compressed with `codec` (Kafka's codec ids).
pub(crate) fn compress(codec: u16, data: &[u8]) -> Result<Vec<u8>, LogError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        LogError::InvalidRecord(format!("cannot compress records with {what}: {e}"))
    };
    match codec {
        GZIP => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).map_err(|e| failed("gzip", &e))?;
            e.finish().map_err(|e| failed("gzip", &e))
        }
        LZ4 => {
            let mut e = lz4::EncoderBuilder::new()
                .build(Vec::new())
                .map_err(|e| failed("lz4", &e))?;
            e.write_all(data).map_err(|e| failed("lz4", &e))?;
            let (out, result) = e.finish();
            result.map_err(|e| failed("lz4", &e))?;
            Ok(out)
        }
        ZSTD => zstd::stream::encode_all(data, 3).map_err(|e| failed("zstd", &e)),
        SNAPPY => {
            let mut out = Vec::with_capacity(XERIAL_HEADER_LEN + data.len());
            out.extend_from_slice(XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes()); // version
            out.extend_from_slice(&1i32.to_be_bytes()); // compatible version
            let mut encoder = snap::raw::Encoder::new();
            for chunk in data.chunks(SNAPPY_BLOCK) {
                let block = encoder
                    .compress_vec(chunk)
                    .map_err(|e| failed("snappy", &e))?;
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            Ok(out)
        }
        other => Err(LogError::InvalidRecord(format!(
            "unknown compression codec {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decompress::decompress;

    #[test]
    fn every_codec_round_trips_through_the_decompressor() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_be_bytes())
            .collect();
        for codec in [GZIP, SNAPPY, LZ4, ZSTD] {
            let packed = compress(codec, &data).unwrap();
            assert!(packed.len() < data.len(), "codec {codec}");
            assert_eq!(decompress(codec, &packed, usize::MAX).unwrap(), data);
        }
        for codec in [GZIP, SNAPPY, LZ4, ZSTD] {
            assert_eq!(
                decompress(codec, &compress(codec, &[]).unwrap(), 10).unwrap(),
                b""
            );
        }
        assert!(compress(7, &data).is_err());
    }
}
