//! The reference's parquet layout: `DATA_FILES/bucket=*/*.parquet` with a
//! `tokens` column holding a list of integers per row (one document per row).
//!
//! Read with the low-level column API (no arrow): the leaf column under
//! `tokens`, INT32 or INT64, its repetition levels marking where a row starts
//! and its definition levels where a value is present. Null and empty lists
//! give empty documents; null elements are dropped. Compression: snappy, gzip,
//! lz4, brotli and uncompressed; zstd is not built in (it needs C code).

use super::DataError;
use parquet::basic::{Compression, ConvertedType, Type as PhysicalType};
use parquet::column::reader::ColumnReader;
use parquet::data_type::Int32Type;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use std::path::Path;
use std::sync::Arc;

/// Name of the token column in the reference's data files.
pub const TOKENS_COLUMN: &str = "tokens";
/// Rows decoded per call.
const BATCH_ROWS: usize = 4096;

fn pq_err(path: &Path, msg: impl std::fmt::Display) -> DataError {
    DataError::Parquet {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    }
}

/// Appends the rows of one list column chunk to `docs`, given its levels.
fn push_rows(
    docs: &mut Vec<Vec<u32>>,
    defs: &[i16],
    reps: &[i16],
    mut values: impl Iterator<Item = u32>,
    max_def: i16,
    n_levels: usize,
) {
    for k in 0..n_levels {
        if reps[k] == 0 || docs.is_empty() {
            docs.push(Vec::new());
        }
        if defs[k] == max_def {
            if let (Some(v), Some(doc)) = (values.next(), docs.last_mut()) {
                doc.push(v);
            }
        }
    }
}

/// Reads the `tokens` list column of one parquet file: one document per row.
pub fn read_parquet_tokens(path: &Path) -> Result<Vec<Vec<u32>>, DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let reader = SerializedFileReader::new(file).map_err(|e| pq_err(path, e))?;
    let meta = reader.metadata();
    let schema = meta.file_metadata().schema_descr();
    let cols: Vec<usize> = (0..schema.num_columns())
        .filter(|&j| {
            schema.column(j).path().parts().first().map(String::as_str) == Some(TOKENS_COLUMN)
        })
        .collect();
    let j = match cols.as_slice() {
        [j] => *j,
        [] => {
            let names: Vec<String> = (0..schema.num_columns())
                .map(|j| schema.column(j).path().string())
                .collect();
            return Err(pq_err(
                path,
                format!(
                    "no `{TOKENS_COLUMN}` column (columns: {})",
                    names.join(", ")
                ),
            ));
        }
        _ => {
            return Err(pq_err(
                path,
                format!("`{TOKENS_COLUMN}` is not a list of integers"),
            ))
        }
    };
    let descr = schema.column(j);
    let (max_def, max_rep) = (descr.max_def_level(), descr.max_rep_level());
    if max_rep != 1
        || !matches!(
            descr.physical_type(),
            PhysicalType::INT32 | PhysicalType::INT64
        )
    {
        return Err(pq_err(
            path,
            format!(
                "`{TOKENS_COLUMN}` must be a list of INT32 or INT64, found {} with repetition level {max_rep}",
                descr.physical_type()
            ),
        ));
    }
    let unsigned = matches!(
        descr.converted_type(),
        ConvertedType::UINT_32 | ConvertedType::UINT_64
    );
    let mut docs = Vec::new();
    let mut bad_value: Option<i64> = None;
    for g in 0..reader.num_row_groups() {
        let rg = reader.get_row_group(g).map_err(|e| pq_err(path, e))?;
        let mut col = rg.get_column_reader(j).map_err(|e| pq_err(path, e))?;
        loop {
            let mut defs = Vec::new();
            let mut reps = Vec::new();
            let n_levels = match &mut col {
                ColumnReader::Int32ColumnReader(r) => {
                    let mut vals: Vec<i32> = Vec::new();
                    let (_, _, n) = r
                        .read_records(BATCH_ROWS, Some(&mut defs), Some(&mut reps), &mut vals)
                        .map_err(|e| pq_err(path, e))?;
                    let ids = vals.iter().map(|&v| {
                        if v < 0 && !unsigned {
                            bad_value.get_or_insert(v as i64);
                        }
                        v as u32
                    });
                    push_rows(&mut docs, &defs, &reps, ids, max_def, n);
                    n
                }
                ColumnReader::Int64ColumnReader(r) => {
                    let mut vals: Vec<i64> = Vec::new();
                    let (_, _, n) = r
                        .read_records(BATCH_ROWS, Some(&mut defs), Some(&mut reps), &mut vals)
                        .map_err(|e| pq_err(path, e))?;
                    let ids = vals.iter().map(|&v| {
                        let u = if unsigned {
                            Some(v as u64 as u32).filter(|_| (v as u64) <= u32::MAX as u64)
                        } else {
                            u32::try_from(v).ok()
                        };
                        u.unwrap_or_else(|| {
                            bad_value.get_or_insert(v);
                            0
                        })
                    });
                    push_rows(&mut docs, &defs, &reps, ids, max_def, n);
                    n
                }
                _ => return Err(pq_err(path, "`tokens` is not an integer list")),
            };
            if n_levels == 0 {
                break;
            }
        }
    }
    if let Some(v) = bad_value {
        return Err(pq_err(path, format!("token id {v} is not a valid u32 id")));
    }
    Ok(docs)
}

/// Writes `docs` as a parquet file with the reference's schema (an optional list
/// of optional INT32 named `tokens`, as pyarrow writes it), snappy-compressed.
pub fn write_parquet_tokens(path: &Path, docs: &[Vec<u32>]) -> Result<(), DataError> {
    let schema = parse_message_type(
        "message schema { optional group tokens (LIST) { repeated group list { optional INT32 element; } } }",
    )
    .map_err(|e| pq_err(path, e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    }
    let file = std::fs::File::create(path).map_err(|e| DataError::io(path, e))?;
    let mut writer = SerializedFileWriter::new(file, Arc::new(schema), Arc::new(props))
        .map_err(|e| pq_err(path, e))?;
    let mut values = Vec::new();
    let mut defs = Vec::new();
    let mut reps = Vec::new();
    for doc in docs {
        if doc.is_empty() {
            defs.push(1); // list present, no element
            reps.push(0);
        }
        for (k, &t) in doc.iter().enumerate() {
            let v = i32::try_from(t)
                .map_err(|_| pq_err(path, format!("token {t} does not fit INT32")))?;
            values.push(v);
            defs.push(3);
            reps.push(if k == 0 { 0 } else { 1 });
        }
    }
    let mut rg = writer.next_row_group().map_err(|e| pq_err(path, e))?;
    while let Some(mut col) = rg.next_column().map_err(|e| pq_err(path, e))? {
        col.typed::<Int32Type>()
            .write_batch(&values, Some(&defs), Some(&reps))
            .map_err(|e| pq_err(path, e))?;
        col.close().map_err(|e| pq_err(path, e))?;
    }
    rg.close().map_err(|e| pq_err(path, e))?;
    writer.close().map_err(|e| pq_err(path, e))?;
    Ok(())
}
