//! A writer schema compiled for decoding: the Avro binary encoding read straight from the
//! record's bytes, without building apache-avro's `Value` tree (a `String` per field name
//! per record), which is what keeps Avro parsing faster than JSON.

use std::collections::HashMap;

use apache_avro::schema::{Name, ResolvedSchema};
use apache_avro::Schema;

/// What a long or int means: the units of its logical type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Plain,
    Date,
    TimeMillis,
    TimeMicros,
    Millis,
    Micros,
    Nanos,
}

/// A compiled writer type.
#[derive(Clone, Debug)]
pub enum W {
    Null,
    Bool,
    Int(Unit),
    Long(Unit),
    Float,
    Double,
    Bytes,
    Str,
    Enum(Vec<String>),
    Fixed(usize),
    Array(Box<W>),
    Map(Box<W>),
    Union(Vec<W>),
    Record(Vec<(String, W)>),
    /// A named type used again, by its place in the table of named types.
    Named(usize),
}

/// A decoded primitive value; text borrows the record's bytes.
#[derive(Clone, Copy, Debug)]
pub enum Cell<'a> {
    Null,
    Bool(bool),
    Int(i64, Unit),
    Float(f64),
    Double(f64),
    Text(&'a [u8]),
    /// An enum's symbol, borrowed from the writer schema.
    Symbol(&'a str),
}

/// Compiles `schema`: named types are compiled once and referred to by index.
pub fn compile(schema: &Schema) -> Result<(W, Vec<W>), String> {
    let resolved = ResolvedSchema::try_from(schema).map_err(|e| e.to_string())?;
    let names: HashMap<Name, &Schema> = resolved.get_names().iter().map(|(n, s)| (n.clone(), *s)).collect();
    let mut named = Vec::new();
    let mut index = HashMap::new();
    let root = compile_in(schema, &names, &mut named, &mut index)?;
    Ok((root, named))
}

fn compile_in(
    schema: &Schema,
    names: &HashMap<Name, &Schema>,
    named: &mut Vec<W>,
    index: &mut HashMap<Name, usize>,
) -> Result<W, String> {
    let mut go = |s: &Schema| compile_in(s, names, named, index);
    Ok(match schema {
        Schema::Null => W::Null,
        Schema::Boolean => W::Bool,
        Schema::Int => W::Int(Unit::Plain),
        Schema::Date => W::Int(Unit::Date),
        Schema::TimeMillis => W::Int(Unit::TimeMillis),
        Schema::Long => W::Long(Unit::Plain),
        Schema::TimeMicros => W::Long(Unit::TimeMicros),
        Schema::TimestampMillis | Schema::LocalTimestampMillis => W::Long(Unit::Millis),
        Schema::TimestampMicros | Schema::LocalTimestampMicros => W::Long(Unit::Micros),
        Schema::TimestampNanos | Schema::LocalTimestampNanos => W::Long(Unit::Nanos),
        Schema::Float => W::Float,
        Schema::Double => W::Double,
        Schema::Bytes | Schema::BigDecimal => W::Bytes,
        Schema::String | Schema::Uuid => W::Str,
        Schema::Duration => W::Fixed(12),
        Schema::Decimal(d) => go(&d.inner)?,
        Schema::Fixed(f) => W::Fixed(f.size),
        Schema::Enum(e) => W::Enum(e.symbols.clone()),
        Schema::Array(a) => W::Array(Box::new(go(&a.items)?)),
        Schema::Map(m) => W::Map(Box::new(go(&m.types)?)),
        Schema::Union(u) => W::Union(u.variants().iter().map(&mut go).collect::<Result<_, _>>()?),
        Schema::Record(r) => {
            W::Record(r.fields.iter().map(|f| Ok((f.name.clone(), go(&f.schema)?))).collect::<Result<_, String>>()?)
        }
        Schema::Ref { name } => {
            if let Some(&i) = index.get(name) {
                return Ok(W::Named(i));
            }
            let target = names.get(name).ok_or_else(|| format!("the schema refers to an undefined type {name:?}"))?;
            let i = named.len();
            index.insert(name.clone(), i);
            named.push(W::Null);
            named[i] = compile_in(target, names, named, index)?;
            W::Named(i)
        }
    })
}

/// Reads one record's bytes.
pub struct Reader<'a> {
    pub bytes: &'a [u8],
    pub at: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        // A forged length may be near usize::MAX: the message must not overflow either.
        let left = self.bytes.len() - self.at;
        let end = end.ok_or_else(|| format!("the record ends early: {n} bytes wanted, {left} left"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    /// A zig-zag varint, as Avro writes `int` and `long`.
    #[inline]
    pub fn long(&mut self) -> Result<i64, String> {
        let mut value: u64 = 0;
        let mut shift = 0;
        loop {
            let Some(&byte) = self.bytes.get(self.at) else { return Err("the record ends inside a number".into()) };
            self.at += 1;
            if shift == 63 && byte > 1 {
                return Err("a number longer than 64 bits".into());
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
            shift += 7;
        }
    }

    /// `n` bytes, as a slice of the record.
    #[inline]
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        self.take(n)
    }

    /// A string or bytes value: its length, then its bytes.
    #[inline]
    pub fn string(&mut self) -> Result<&'a [u8], String> {
        let n = self.len()?;
        self.take(n)
    }

    fn len(&mut self) -> Result<usize, String> {
        let n = self.long()?;
        match usize::try_from(n) {
            Ok(n) => Ok(n),
            Err(_) if n < 0 => Err(format!("a negative length ({n})")),
            Err(_) => Err(format!("a length of {n} bytes, more than can be addressed")),
        }
    }

    /// Reads a primitive value (a union's branch included); `None` for a complex one, skipped.
    pub fn cell(&mut self, w: &'a W, named: &'a [W]) -> Result<Option<Cell<'a>>, String> {
        Ok(Some(match w {
            W::Null => Cell::Null,
            W::Bool => match self.take(1)?[0] {
                0 => Cell::Bool(false),
                1 => Cell::Bool(true),
                b => return Err(format!("a boolean byte {b}")),
            },
            W::Int(unit) => {
                let v = self.long()?;
                i32::try_from(v).map_err(|_| format!("an int out of range ({v})"))?;
                Cell::Int(v, *unit)
            }
            W::Long(unit) => Cell::Int(self.long()?, *unit),
            W::Float => Cell::Float(f32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")) as f64),
            W::Double => Cell::Double(f64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes"))),
            W::Str | W::Bytes => {
                let n = self.len()?;
                Cell::Text(self.take(n)?)
            }
            W::Enum(symbols) => {
                let i = self.long()?;
                let symbol = usize::try_from(i).ok().and_then(|i| symbols.get(i));
                Cell::Symbol(symbol.ok_or_else(|| format!("an enum index {i} of {} symbols", symbols.len()))?)
            }
            W::Union(branches) => {
                let i = self.long()?;
                let branch = usize::try_from(i).ok().and_then(|i| branches.get(i));
                let branch = branch.ok_or_else(|| format!("a union branch {i} of {}", branches.len()))?;
                return self.cell(branch, named);
            }
            W::Named(i) => return self.cell(&named[*i], named),
            complex => {
                self.skip(complex, named)?;
                return Ok(None);
            }
        }))
    }

    /// Steps over a value of any type.
    pub fn skip(&mut self, w: &'a W, named: &'a [W]) -> Result<(), String> {
        match w {
            W::Fixed(n) => self.take(*n).map(|_| ()),
            W::Record(fields) => fields.iter().try_for_each(|(_, f)| self.skip(f, named)),
            W::Array(item) => self.blocks(|r| r.skip(item, named)),
            W::Map(value) => self.blocks(|r| {
                let n = r.len()?;
                r.take(n)?;
                r.skip(value, named)
            }),
            W::Named(i) => self.skip(&named[*i], named),
            primitive => self.cell(primitive, named).map(|_| ()),
        }
    }

    /// Arrays and maps: blocks of a count (negative: followed by the block's size) until 0.
    fn blocks(&mut self, mut item: impl FnMut(&mut Self) -> Result<(), String>) -> Result<(), String> {
        loop {
            let count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                self.long()?;
            }
            // Items may take no bytes (nulls): a count is bounded so a forged one cannot spin.
            let left = (self.bytes.len() - self.at) as u64;
            if count.unsigned_abs() > left.max(1 << 16) {
                return Err(format!("{} items announced in {left} bytes", count.unsigned_abs()));
            }
            for _ in 0..count.unsigned_abs() {
                item(self)?;
            }
        }
    }
}
