//! fer2013-style CSV files.
//!
//! - `fer2013.csv`: header `emotion,pixels,Usage`; `pixels` is 2304 space-separated integers 0..=255 (48x48,
//!   row-major); `Usage` Training → split "train", PublicTest → "public_test", PrivateTest → "private_test".
//! - Kaggle's `train.csv` (header `emotion,pixels`) → split "train"; `test.csv` (header `pixels` or
//!   `id,pixels`) → split "test" with labels -1.
//!
//! Columns may come in any order (Kaggle's `icml_face_data.csv` has `emotion, Usage, pixels`); header names
//! are matched case-insensitively with surrounding spaces ignored. A UTF-8 BOM, CRLF line endings, quoted
//! fields and blank lines are accepted. Lines are counted from 1 (the header) in every error message.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::{DataError, DataSource, Format, SplitBuilder, FER_CLASSES};

/// FER2013 image side.
pub const FER_SIDE: usize = 48;
const FER_PIXELS: usize = FER_SIDE * FER_SIDE;
const EXPECTED_HEADER: &str =
    "expected header `emotion,pixels,Usage` (or Kaggle's `emotion,pixels`, `pixels` or `id,pixels`)";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Col {
    Emotion,
    Pixels,
    Usage,
    Id,
}

/// Loads a fer2013-style CSV file (see the module docs). `size`/`warn` as in [`super::load`].
pub fn load_csv(
    path: &Path,
    size: Option<usize>,
    warn: &mut dyn FnMut(String),
) -> Result<DataSource, DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let csv_err = |line: usize, msg: String| DataError::Csv { path: path.to_path_buf(), line, msg };

    let mut buf = Vec::new();
    let n = reader.read_until(b'\n', &mut buf).map_err(|e| DataError::io(path, e))?;
    if n == 0 {
        return Err(csv_err(1, format!("{EXPECTED_HEADER}, found an empty file")));
    }
    let header_line = trim_eol(strip_bom(&buf));
    let header_fields = split_fields(header_line).map_err(|m| csv_err(1, m))?;
    let mut cols = Vec::with_capacity(header_fields.len());
    for f in &header_fields {
        let name = String::from_utf8_lossy(f).trim().to_ascii_lowercase();
        let col = match name.as_str() {
            "emotion" => Col::Emotion,
            "pixels" => Col::Pixels,
            "usage" => Col::Usage,
            "id" => Col::Id,
            _ => {
                let looks_like_data =
                    header_fields.first().is_some_and(|f| !f.is_empty() && f.iter().all(u8::is_ascii_digit));
                let found = shorten(&String::from_utf8_lossy(header_line));
                return Err(csv_err(
                    1,
                    if looks_like_data {
                        format!(
                            "missing header: {EXPECTED_HEADER} as the first line, found a data row `{found}`"
                        )
                    } else {
                        format!("{EXPECTED_HEADER}, found `{found}`")
                    },
                ));
            }
        };
        if cols.contains(&col) {
            return Err(csv_err(1, format!("column `{name}` appears twice in the header")));
        }
        cols.push(col);
    }
    let pos = |c: Col| cols.iter().position(|&x| x == c);
    let (emotion_col, pixels_col, usage_col) = (pos(Col::Emotion), pos(Col::Pixels), pos(Col::Usage));
    let Some(pixels_col) = pixels_col else {
        let found = shorten(&String::from_utf8_lossy(header_line));
        return Err(csv_err(1, format!("{EXPECTED_HEADER}, found `{found}` (no `pixels` column)")));
    };
    if usage_col.is_some() && emotion_col.is_none() {
        let found = shorten(&String::from_utf8_lossy(header_line));
        return Err(csv_err(
            1,
            format!("{EXPECTED_HEADER}, found `{found}` (a `Usage` column but no `emotion`)"),
        ));
    }
    let format = if usage_col.is_some() { Format::Fer2013Csv } else { Format::KaggleCsv };
    let header_text: Vec<&str> = cols
        .iter()
        .map(|c| match c {
            Col::Emotion => "emotion",
            Col::Pixels => "pixels",
            Col::Usage => "Usage",
            Col::Id => "id",
        })
        .collect();
    let header_text = header_text.join(",");

    // Split builders: fer2013 has three; Kaggle train.csv one ("train"); an unlabelled test.csv one ("test").
    let split_names: &[&str] = match (usage_col, emotion_col) {
        (Some(_), _) => &["train", "public_test", "private_test"],
        (None, Some(_)) => &["train"],
        (None, None) => &["test"],
    };
    let mut builders: Vec<SplitBuilder> = split_names
        .iter()
        .map(|name| {
            let mut b = SplitBuilder::new(name, size, 1);
            b.expect_size(FER_SIDE, FER_SIDE);
            b
        })
        .collect();

    let mut line_no = 1usize;
    let mut img = Vec::with_capacity(FER_PIXELS);
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let line = trim_eol(&buf);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let fields = split_fields(line).map_err(|m| csv_err(line_no, m))?;
        if fields.len() != cols.len() {
            return Err(csv_err(
                line_no,
                format!("expected {} fields ({header_text}), found {}", cols.len(), fields.len()),
            ));
        }
        let field = |i: usize| fields.get(i).copied().unwrap_or_default();
        let label = match emotion_col {
            Some(c) => parse_label(field(c)).map_err(|m| csv_err(line_no, m))?,
            None => -1,
        };
        let split = match usage_col {
            Some(c) => parse_usage(field(c)).map_err(|m| csv_err(line_no, m))?,
            None => 0,
        };
        parse_pixels(field(pixels_col), &mut img).map_err(|m| csv_err(line_no, m))?;
        if let Some(b) = builders.get_mut(split) {
            // Every row is 48x48 and the builders expect 48x48, so a size refusal cannot happen here.
            b.push(&img, FER_SIDE, FER_SIDE, label)
                .map_err(|_| csv_err(line_no, "image size mismatch".into()))?;
        }
    }

    if builders.iter().all(|b| b.labels.is_empty()) {
        return Err(DataError::CsvContent {
            path: path.to_path_buf(),
            msg: format!("no data rows after the header (line 1; {line_no} lines in all)"),
        });
    }
    if usage_col.is_some() && builders.first().is_some_and(|b| b.labels.is_empty()) {
        let count = |i: usize| builders.get(i).map_or(0, |b| b.labels.len());
        return Err(DataError::CsvContent {
            path: path.to_path_buf(),
            msg: format!(
                "no row with Usage `Training` in lines 2-{line_no} (found {} PublicTest and {} PrivateTest \
                 rows); the training split must not be empty",
                count(1),
                count(2)
            ),
        });
    }

    let splits = builders
        .into_iter()
        .filter(|b| !b.labels.is_empty())
        .map(|b| (b.name.clone(), b.finish(warn)))
        .collect();
    Ok(DataSource {
        format,
        path: path.display().to_string(),
        class_names: FER_CLASSES.iter().map(|s| s.to_string()).collect(),
        splits,
    })
}

fn strip_bom(b: &[u8]) -> &[u8] {
    b.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(b)
}

fn trim_eol(mut b: &[u8]) -> &[u8] {
    while let Some((&last, rest)) = b.split_last() {
        if last == b'\n' || last == b'\r' {
            b = rest;
        } else {
            break;
        }
    }
    b
}

fn trim_ws(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(start, |e| e + 1);
    b.get(start..end).unwrap_or_default()
}

/// Splits one CSV line into fields, trimming spaces around each and removing the quotes of a quoted field
/// (a doubled quote inside stays doubled: no field of these files needs one). Quoted fields may hold commas
/// but not line breaks.
fn split_fields(line: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut fields = Vec::new();
    let mut rest = line;
    loop {
        let leading = rest.iter().take_while(|c| c.is_ascii_whitespace()).count();
        let after_ws = rest.get(leading..).unwrap_or_default();
        if after_ws.first() == Some(&b'"') {
            // Quoted field: find the closing quote (a doubled quote is an escaped quote).
            let body = after_ws.get(1..).unwrap_or_default();
            let mut i = 0;
            let close = loop {
                match body.get(i) {
                    None => return Err(format!("field {} has an unterminated quote", fields.len() + 1)),
                    Some(b'"') if body.get(i + 1) == Some(&b'"') => i += 2,
                    Some(b'"') => break i,
                    Some(_) => i += 1,
                }
            };
            fields.push(body.get(..close).unwrap_or_default());
            let after = body.get(close + 1..).unwrap_or_default();
            let after_trim = trim_ws(after);
            match after_trim.first() {
                None => return Ok(fields),
                Some(b',') => {
                    let comma = after.iter().position(|&c| c == b',').unwrap_or(0);
                    rest = after.get(comma + 1..).unwrap_or_default();
                }
                Some(_) => {
                    return Err(format!("field {} has text after its closing quote", fields.len()));
                }
            }
        } else {
            match rest.iter().position(|&c| c == b',') {
                Some(comma) => {
                    fields.push(trim_ws(rest.get(..comma).unwrap_or_default()));
                    rest = rest.get(comma + 1..).unwrap_or_default();
                }
                None => {
                    fields.push(trim_ws(rest));
                    return Ok(fields);
                }
            }
        }
    }
}

fn parse_label(f: &[u8]) -> Result<i32, String> {
    let f = trim_ws(f);
    let text = String::from_utf8_lossy(f);
    match parse_uint(f) {
        Some(v) if v < FER_CLASSES.len() as u64 => Ok(v as i32),
        Some(v) => Err(format!("emotion label {v} is outside 0..=6 (angry..neutral)")),
        None => Err(format!("emotion `{}` is not an integer 0..=6", shorten(&text))),
    }
}

fn parse_usage(f: &[u8]) -> Result<usize, String> {
    let text = String::from_utf8_lossy(trim_ws(f));
    match text.to_ascii_lowercase().as_str() {
        "training" => Ok(0),
        "publictest" => Ok(1),
        "privatetest" => Ok(2),
        _ => Err(format!("unknown Usage `{}`, expected Training, PublicTest or PrivateTest", shorten(&text))),
    }
}

/// Parses an unsigned decimal integer made only of ASCII digits (saturating well above any valid value).
fn parse_uint(f: &[u8]) -> Option<u64> {
    if f.is_empty() || !f.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        f.iter()
            .fold(0u64, |acc, &d| acc.saturating_mul(10).saturating_add(u64::from(d - b'0')).min(1 << 40)),
    )
}

/// Parses exactly 2304 whitespace-separated integers 0..=255 into `out`.
fn parse_pixels(f: &[u8], out: &mut Vec<f32>) -> Result<(), String> {
    out.clear();
    let mut count = 0usize;
    for tok in f.split(u8::is_ascii_whitespace).filter(|t| !t.is_empty()) {
        count += 1;
        match parse_uint(tok) {
            Some(v) if v <= 255 => {
                if out.len() < FER_PIXELS {
                    out.push(v as f32);
                }
            }
            Some(v) => return Err(format!("pixel {count} is {v}, expected an integer 0..=255")),
            None => {
                let text = String::from_utf8_lossy(tok);
                return Err(format!("pixel {count} is `{}`, expected an integer 0..=255", shorten(&text)));
            }
        }
    }
    if count != FER_PIXELS {
        return Err(format!("expected {FER_PIXELS} pixel values (48x48), found {count}"));
    }
    Ok(())
}

/// At most 60 characters of `s`, for quoting file contents in a message.
fn shorten(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() })
        .collect();
    if s.chars().count() <= 60 {
        s
    } else {
        format!("{}...", s.chars().take(57).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_plain_quoted_and_spaced() {
        let f = split_fields(b"0, \"1 2 3\" ,Training").unwrap();
        assert_eq!(f, vec![&b"0"[..], &b"1 2 3"[..], &b"Training"[..]]);
        let f = split_fields(b"a,,b,").unwrap();
        assert_eq!(f, vec![&b"a"[..], &b""[..], &b"b"[..], &b""[..]]);
        assert!(split_fields(b"0,\"1 2").is_err());
        assert!(split_fields(b"0,\"1 2\"x,3").is_err());
    }

    #[test]
    fn pixel_errors() {
        let mut out = Vec::new();
        let ok = vec!["7"; FER_PIXELS].join(" ");
        assert!(parse_pixels(ok.as_bytes(), &mut out).is_ok());
        assert_eq!(out.len(), FER_PIXELS);
        assert!(parse_pixels(b"1 2 x", &mut out).unwrap_err().contains("pixel 3 is `x`"));
        assert!(parse_pixels(b"1 999999999999999999999", &mut out).unwrap_err().contains("pixel 2"));
    }
}
