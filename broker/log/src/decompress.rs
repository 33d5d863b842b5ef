//! Bounded decompression of a batch's records, for produce-time validation (as Kafka's
//! `LogValidator` decompresses what a producer sends). Every codec is read as a stream
//! and stops at `limit` bytes, so a small "decompression bomb" cannot make the broker
//! allocate more than the limit.
//!
//! Codecs are Kafka's: 1 gzip, 2 snappy (xerial-framed as the Java client writes it, or
//! raw), 3 lz4 (frame format), 4 zstd.
use std::io::Read;

use super::error::LogError;

/// Codec ids in a batch's attributes.
pub(crate) const GZIP: u16 = 1;
pub(crate) const SNAPPY: u16 = 2;
pub(crate) const LZ4: u16 = 3;
pub(crate) const ZSTD: u16 = 4;

/// The header xerial's SnappyOutputStream starts with (magic, version, compatible version).
pub(crate) const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
pub(crate) const XERIAL_HEADER_LEN: usize = 16;

/// Decompresses `data`, compressed with `codec`, into at most `limit` bytes.
pub fn decompress(codec: u16, data: &[u8], limit: usize) -> Result<Vec<u8>, LogError> {
    let corrupt = |what: &str, e: &dyn std::fmt::Display| {
        LogError::CorruptRecord(format!("cannot decompress {what} records: {e}"))
    };
    match codec {
        GZIP => read_bounded(flate2::read::GzDecoder::new(data), limit, "gzip"),
        LZ4 => {
            let decoder = lz4::Decoder::new(data).map_err(|e| corrupt("lz4", &e))?;
            read_bounded(decoder, limit, "lz4")
        }
        ZSTD => {
            let decoder =
                zstd::stream::read::Decoder::new(data).map_err(|e| corrupt("zstd", &e))?;
            read_bounded(decoder, limit, "zstd")
        }
        SNAPPY => snappy(data, limit),
        other => Err(LogError::InvalidRecord(format!(
            "unknown compression codec {other}"
        ))),
    }
}

/// Reads `reader` to its end, failing once it yields more than `limit` bytes.
fn read_bounded(reader: impl Read, limit: usize, codec: &str) -> Result<Vec<u8>, LogError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| LogError::CorruptRecord(format!("cannot decompress {codec} records: {e}")))?;
    if out.len() > limit {
        return Err(too_large(codec, limit));
    }
    Ok(out)
}

fn too_large(codec: &str, limit: usize) -> LogError {
    LogError::InvalidRecord(format!(
        "{codec} records decompress to more than {limit} bytes"
    ))
}

/// Snappy: xerial framing (a 16-byte header, then blocks of a 4-byte big-endian length
/// and a raw snappy block) or, without the header, one raw snappy block. Each block's
/// declared length is checked against what is left of `limit` before it is expanded.
fn snappy(data: &[u8], limit: usize) -> Result<Vec<u8>, LogError> {
    let corrupt = |e: &dyn std::fmt::Display| {
        LogError::CorruptRecord(format!("cannot decompress snappy records: {e}"))
    };
    let mut out = Vec::new();
    let mut decoder = snap::raw::Decoder::new();
    let mut expand = |block: &[u8], out: &mut Vec<u8>| -> Result<(), LogError> {
        let len = snap::raw::decompress_len(block).map_err(|e| corrupt(&e))?;
        if out.len().saturating_add(len) > limit {
            return Err(too_large("snappy", limit));
        }
        let at = out.len();
        out.resize(at + len, 0);
        let written = decoder
            .decompress(block, &mut out[at..])
            .map_err(|e| corrupt(&e))?;
        out.truncate(at + written);
        Ok(())
    };
    if !data.starts_with(XERIAL_MAGIC) {
        expand(data, &mut out)?;
        return Ok(out);
    }
    let mut rest = data
        .get(XERIAL_HEADER_LEN..)
        .ok_or_else(|| corrupt(&"truncated xerial header"))?;
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt(&"truncated block length"))?;
        let len = u32::from_be_bytes(*len) as usize;
        let block = tail
            .get(..len)
            .ok_or_else(|| corrupt(&"block overruns the batch"))?;
        expand(block, &mut out)?;
        rest = &tail[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn xerial(data: &[u8]) -> Vec<u8> {
        let mut out = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        for chunk in data.chunks(32 * 1024) {
            let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
            out.extend_from_slice(&(block.len() as u32).to_be_bytes());
            out.extend_from_slice(&block);
        }
        out
    }

    fn lz4_frame(data: &[u8]) -> Vec<u8> {
        let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
        e.write_all(data).unwrap();
        let (out, result) = e.finish();
        result.unwrap();
        out
    }

    #[test]
    fn every_codec_round_trips() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let raw_snappy = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        let zstd = zstd::stream::encode_all(&data[..], 3).unwrap();
        for (codec, compressed) in [
            (GZIP, gzip(&data)),
            (SNAPPY, xerial(&data)),
            (SNAPPY, raw_snappy),
            (LZ4, lz4_frame(&data)),
            (ZSTD, zstd),
        ] {
            assert_eq!(
                decompress(codec, &compressed, 1 << 20).unwrap(),
                data,
                "codec {codec}"
            );
        }
    }

    /// A few KiB that expand to 64 MiB stop at the limit, for every codec.
    #[test]
    fn bombs_stop_at_the_limit() {
        let zeros = vec![0u8; 64 << 20];
        let limit = 1 << 20;
        let raw_snappy = snap::raw::Encoder::new().compress_vec(&zeros).unwrap();
        for (codec, bomb) in [
            (GZIP, gzip(&zeros)),
            (SNAPPY, xerial(&zeros)),
            (SNAPPY, raw_snappy),
            (LZ4, lz4_frame(&zeros)),
            (ZSTD, zstd::stream::encode_all(&zeros[..], 3).unwrap()),
        ] {
            assert!(bomb.len() < 4 << 20, "codec {codec}: {} bytes", bomb.len());
            match decompress(codec, &bomb, limit) {
                Err(LogError::InvalidRecord(m)) => assert!(m.contains("more than"), "{m}"),
                other => panic!("codec {codec}: {other:?}"),
            }
        }
    }

    #[test]
    fn garbage_is_a_corrupt_record_not_a_panic() {
        let xerial_garbage = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01\xff\xff\xff\xff";
        for codec in [GZIP, SNAPPY, LZ4, ZSTD] {
            for garbage in [&[0x5a; 16][..], &xerial_garbage[..]] {
                assert!(
                    decompress(codec, garbage, 1 << 20).is_err(),
                    "codec {codec}"
                );
            }
            // Nothing at all (or less than a frame header) decodes to nothing or fails;
            // either way no record is there and the record walk refuses the batch.
            for short in [&b""[..], b"\x00\x01\x02"] {
                assert!(decompress(codec, short, 1 << 20).map_or(true, |d| d.is_empty()));
            }
        }
        assert!(matches!(
            decompress(7, b"x", 10),
            Err(LogError::InvalidRecord(_))
        ));
    }
}
