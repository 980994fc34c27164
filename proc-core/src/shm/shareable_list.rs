//! A fixed-length list of typed items in one named segment, as Python's
//! `multiprocessing.shared_memory.ShareableList`.
//!
//! Layout (native byte order; the list is shared between processes of one machine):
//!
//! ```text
//! 0   magic "MPSLIST1"
//! 8   number of items (u32), then 4 reserved bytes
//! 16  one 16-byte descriptor per item: tag (u8), 3 reserved bytes, bytes used (u32),
//!     offset of its storage (u32), capacity of its storage (u32)
//! ..  the items' storage, each 8-byte aligned, at least 8 bytes
//! ```
//!
//! An item's offset and capacity are fixed when the list is made; its tag and length change when
//! it is set. Every read checks what it reads against the segment, so a list that another process
//! wrote garbage into gives errors, never an access outside the segment.

use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::SharedMemory;
use crate::error::{Error, ErrorKind, Result};

const MAGIC: &[u8; 8] = b"MPSLIST1";
const HEADER: usize = 16;
const DESCRIPTOR: usize = 16;
/// The smallest storage of an item: room for any number.
const MIN_CAPACITY: usize = 8;

/// One item of a [`ShareableList`]: the types Python's `ShareableList` holds.
///
/// # Examples
///
/// ```
/// use proc_core::shm::Item;
///
/// assert_eq!(Item::from(3), Item::Int(3));
/// assert_eq!(Item::from("name"), Item::Str("name".into()));
/// assert_eq!(i64::try_from(Item::Int(7)), Ok(7));
/// assert!(String::try_from(Item::Float(1.5)).is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// Python's `None`.
    None,
    /// A 64-bit signed integer (Python's `int` within that range).
    Int(i64),
    /// A 64-bit float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// UTF-8 text.
    Str(String),
    /// Bytes.
    Bytes(Vec<u8>),
}

impl Item {
    fn tag(&self) -> u8 {
        match self {
            Item::None => 0,
            Item::Int(_) => 1,
            Item::Float(_) => 2,
            Item::Bool(_) => 3,
            Item::Str(_) => 4,
            Item::Bytes(_) => 5,
        }
    }

    /// The bytes it is stored as.
    fn encode(&self) -> Vec<u8> {
        match self {
            Item::None => Vec::new(),
            Item::Int(v) => v.to_ne_bytes().to_vec(),
            Item::Float(v) => v.to_ne_bytes().to_vec(),
            Item::Bool(v) => vec![u8::from(*v)],
            Item::Str(s) => s.as_bytes().to_vec(),
            Item::Bytes(b) => b.clone(),
        }
    }

    fn decode(tag: u8, bytes: Vec<u8>) -> std::result::Result<Item, String> {
        let word = |bytes: &[u8]| {
            <[u8; 8]>::try_from(bytes).map_err(|_| format!("a number of {} bytes", bytes.len()))
        };
        Ok(match tag {
            0 => Item::None,
            1 => Item::Int(i64::from_ne_bytes(word(&bytes)?)),
            2 => Item::Float(f64::from_ne_bytes(word(&bytes)?)),
            3 => match bytes[..] {
                [b] => Item::Bool(b != 0),
                _ => return Err(format!("a boolean of {} bytes", bytes.len())),
            },
            4 => Item::Str(String::from_utf8(bytes).map_err(|_| "text that is not UTF-8".to_owned())?),
            5 => Item::Bytes(bytes),
            other => return Err(format!("an unknown item type {other}")),
        })
    }

    /// The storage it needs: its length, rounded up to 8 bytes, and at least 8.
    fn capacity(&self) -> usize {
        self.encode().len().max(MIN_CAPACITY).next_multiple_of(8)
    }
}

macro_rules! item_from {
    ($($t:ty => $variant:ident($conv:expr)),* $(,)?) => {
        $(impl From<$t> for Item {
            fn from(v: $t) -> Self {
                Item::$variant($conv(v))
            }
        })*
    };
}

item_from! {
    i64 => Int(|v| v),
    i32 => Int(i64::from),
    u32 => Int(i64::from),
    f64 => Float(|v| v),
    bool => Bool(|v| v),
    String => Str(|v| v),
    &str => Str(str::to_owned),
    Vec<u8> => Bytes(|v| v),
    &[u8] => Bytes(<[u8]>::to_vec),
}

impl From<()> for Item {
    fn from((): ()) -> Self {
        Item::None
    }
}

impl<T: Into<Item>> From<Option<T>> for Item {
    fn from(v: Option<T>) -> Self {
        v.map_or(Item::None, Into::into)
    }
}

macro_rules! item_into {
    ($($t:ty => $variant:ident),* $(,)?) => {
        $(impl TryFrom<Item> for $t {
            type Error = Item;
            /// The value of an item of this type; any other item comes back as the error.
            fn try_from(item: Item) -> std::result::Result<Self, Item> {
                match item {
                    Item::$variant(v) => Ok(v),
                    other => Err(other),
                }
            }
        })*
    };
}

item_into! { i64 => Int, f64 => Float, bool => Bool, String => Str, Vec<u8> => Bytes }

/// A fixed-length list of [`Item`]s in one named shared-memory segment (Python's
/// `multiprocessing.shared_memory.ShareableList`): made once from its items, then read and set
/// in place by any process that opens it by name, or that receives it (it travels as its name).
///
/// Each item keeps the storage it was made with: a number, a boolean or `None` takes 8 bytes, text
/// and bytes their length rounded up to 8. An item may be set to a value of another type that
/// fits in that storage; a longer one is refused ([`Error::is_item_too_large`]). As in Python,
/// the list does no locking: processes that set items while others read them guard it with a
/// `Lock` (a read racing a write may see a mix of the old and the new item, or fail, but never
/// reads outside the segment).
///
/// Like [`SharedMemory`], the creator's segment is registered with the resource tracker;
/// [`unlink`](Self::unlink) removes the name.
///
/// # Examples
///
/// ```
/// use proc_core::shm::{Item, ShareableList};
/// use proc_core::Process;
///
/// fn child(list: ShareableList) -> Result<(), String> {
///     list.set(0, 42).map_err(|e| e.to_string())?;
///     list.set(2, "done").map_err(|e| e.to_string())
/// }
///
/// let list = ShareableList::create([Item::Int(1), Item::Float(2.5), Item::from("pending")])?;
/// Process::new(child, (list.try_clone()?,)).start()?.join()?.expect("the child's sets");
/// assert_eq!(list.to_vec()?, [Item::Int(42), Item::Float(2.5), Item::from("done")]);
/// // "pending" had 8 bytes of storage: a longer text does not fit.
/// assert!(list.set(2, "far too long for it").unwrap_err().is_item_too_large());
/// list.unlink()?;
/// # Ok::<(), proc_core::Error>(())
/// ```
pub struct ShareableList {
    shm: SharedMemory,
    len: usize,
}

/// One item's descriptor, as stored.
#[derive(Debug, Clone, Copy)]
struct Descriptor {
    tag: u8,
    used: usize,
    offset: usize,
    capacity: usize,
}

impl ShareableList {
    /// Makes a list of `items` in a new segment under a new random name.
    ///
    /// # Errors
    ///
    /// The system refuses to make the segment, or the items need more than 4 GiB.
    pub fn create<I: Into<Item>>(items: impl IntoIterator<Item = I>) -> Result<Self> {
        Self::make(None, items.into_iter().map(Into::into).collect())
    }

    /// Makes a list of `items` in a new segment named `name` (as [`SharedMemory::create_named`]).
    ///
    /// # Errors
    ///
    /// A segment of that name exists ([`Error::is_already_exists`]); the name is invalid; the
    /// system refuses; the items need more than 4 GiB.
    pub fn create_named<I: Into<Item>>(name: &str, items: impl IntoIterator<Item = I>) -> Result<Self> {
        Self::make(Some(name), items.into_iter().map(Into::into).collect())
    }

    fn make(name: Option<&str>, items: Vec<Item>) -> Result<Self> {
        let too_large = || Error::invalid_argument("a shareable list's items need more than 4 GiB");
        let mut offset = HEADER + DESCRIPTOR * items.len();
        let mut descriptors = Vec::with_capacity(items.len());
        for item in &items {
            let capacity = item.capacity();
            descriptors.push(Descriptor { tag: item.tag(), used: 0, offset, capacity });
            offset =
                offset.checked_add(capacity).filter(|&o| u32::try_from(o).is_ok()).ok_or_else(too_large)?;
        }
        let len = u32::try_from(items.len()).map_err(|_| too_large())?;
        let shm = match name {
            Some(name) => SharedMemory::create_named(name, offset)?,
            None => SharedMemory::create(offset)?,
        };
        let list = ShareableList { shm, len: items.len() };
        let mut header = [0u8; HEADER];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&len.to_ne_bytes());
        list.shm.write(0, &header)?;
        for (index, (item, descriptor)) in items.iter().zip(descriptors).enumerate() {
            list.store(index, descriptor, item)?;
        }
        Ok(list)
    }

    /// Opens the list named `name`, made by [`create`](Self::create) in any process (the segment
    /// is verified as [`SharedMemory::open`] does).
    ///
    /// # Errors
    ///
    /// No such segment ([`Error::is_not_found`]); the name is invalid; the segment is untrusted;
    /// it does not hold a shareable list ([`Error::is_not_shareable_list`]).
    pub fn open(name: &str) -> Result<Self> {
        Self::attach(SharedMemory::open(name)?)
    }

    fn attach(shm: SharedMemory) -> Result<Self> {
        let not_a_list =
            |why: String| Error::new(ErrorKind::NotShareableList { name: shm.name().to_owned(), why });
        let mut header = [0u8; HEADER];
        shm.read(0, &mut header).map_err(|_| not_a_list("shorter than its header".into()))?;
        if &header[..8] != MAGIC {
            return Err(not_a_list("no shareable-list header".into()));
        }
        let len = u32::from_ne_bytes([header[8], header[9], header[10], header[11]]) as usize;
        if len.checked_mul(DESCRIPTOR).and_then(|d| d.checked_add(HEADER)).is_none_or(|end| end > shm.size())
        {
            return Err(not_a_list(format!("{len} items do not fit in {} bytes", shm.size())));
        }
        Ok(ShareableList { shm, len })
    }

    /// Another handle on the same list, in this process (it maps the segment again).
    ///
    /// # Errors
    ///
    /// The segment cannot be opened any more (it was unlinked: [`Error::is_not_found`]).
    pub fn try_clone(&self) -> Result<Self> {
        Self::open(self.name())
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the list has no items.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The item at `index`.
    ///
    /// # Errors
    ///
    /// `index` is not below [`len`](Self::len) ([`Error::is_index_out_of_range`]); the item's
    /// stored bytes are not a valid item (another process wrote garbage, or is writing it now:
    /// [`Error::is_not_shareable_list`]).
    pub fn get(&self, index: usize) -> Result<Item> {
        let d = self.descriptor(index)?;
        if d.used > d.capacity {
            return Err(self.corrupt(index, format!("{} bytes used of {}", d.used, d.capacity)));
        }
        let mut bytes = vec![0u8; d.used];
        self.shm.read(d.offset, &mut bytes)?;
        Item::decode(d.tag, bytes).map_err(|why| self.corrupt(index, why))
    }

    /// Sets the item at `index` (of any type that fits in its storage).
    ///
    /// # Errors
    ///
    /// `index` is not below [`len`](Self::len) ([`Error::is_index_out_of_range`]); `item` needs
    /// more storage than the item at `index` has ([`Error::is_item_too_large`]).
    pub fn set(&self, index: usize, item: impl Into<Item>) -> Result<()> {
        let d = self.descriptor(index)?;
        self.store(index, d, &item.into())
    }

    /// Every item, in order (Python's `list(sl)`).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn to_vec(&self) -> Result<Vec<Item>> {
        (0..self.len).map(|i| self.get(i)).collect()
    }

    /// How many items equal `item` (Python's `count`).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn count(&self, item: &Item) -> Result<usize> {
        Ok(self.to_vec()?.iter().filter(|i| *i == item).count())
    }

    /// The index of the first item equal to `item`, if any (Python's `index`).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn index(&self, item: &Item) -> Result<Option<usize>> {
        for i in 0..self.len {
            if self.get(i)? == *item {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// The name of its segment, without the leading `/`.
    pub fn name(&self) -> &str {
        self.shm.name()
    }

    /// Its segment (Python's `shm`).
    pub fn shm(&self) -> &SharedMemory {
        &self.shm
    }

    /// Removes the name (as [`SharedMemory::unlink`]); the list stays usable by every process
    /// that has it open.
    ///
    /// # Errors
    ///
    /// The name was already removed ([`Error::is_not_found`]).
    pub fn unlink(&self) -> Result<()> {
        self.shm.unlink()
    }

    fn descriptor(&self, index: usize) -> Result<Descriptor> {
        if index >= self.len {
            return Err(Error::new(ErrorKind::IndexOutOfRange { index, len: self.len }));
        }
        let mut raw = [0u8; DESCRIPTOR];
        self.shm.read(HEADER + index * DESCRIPTOR, &mut raw)?;
        let word = |at: usize| u32::from_ne_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]) as usize;
        let d = Descriptor { tag: raw[0], used: word(4), offset: word(8), capacity: word(12) };
        // The storage must lie inside the segment, after the descriptors.
        let start = HEADER + self.len * DESCRIPTOR;
        match d.offset.checked_add(d.capacity) {
            Some(end) if d.offset >= start && end <= self.shm.size() => Ok(d),
            _ => Err(self.corrupt(index, format!("storage at {} of {} bytes", d.offset, d.capacity))),
        }
    }

    /// Writes `item` into the storage `d` describes, then its descriptor.
    fn store(&self, index: usize, d: Descriptor, item: &Item) -> Result<()> {
        let bytes = item.encode();
        if bytes.len() > d.capacity {
            return Err(Error::new(ErrorKind::ItemTooLarge {
                index,
                len: bytes.len(),
                capacity: d.capacity,
            }));
        }
        self.shm.write(d.offset, &bytes)?;
        let mut raw = [0u8; DESCRIPTOR];
        raw[0] = item.tag();
        // Both fit in u32: the capacity does, and the list's whole size was checked when made.
        raw[4..8].copy_from_slice(&(bytes.len() as u32).to_ne_bytes());
        raw[8..12].copy_from_slice(&(d.offset as u32).to_ne_bytes());
        raw[12..16].copy_from_slice(&(d.capacity as u32).to_ne_bytes());
        self.shm.write(HEADER + index * DESCRIPTOR, &raw)
    }

    fn corrupt(&self, index: usize, why: String) -> Error {
        Error::new(ErrorKind::NotShareableList {
            name: self.name().to_owned(),
            why: format!("item {index}: {why}"),
        })
    }
}

impl fmt::Debug for ShareableList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShareableList").field("name", &self.name()).field("len", &self.len).finish()
    }
}

/// Serialized, a list is its name: the receiver opens it.
impl Serialize for ShareableList {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.shm.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ShareableList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        ShareableList::attach(SharedMemory::deserialize(deserializer)?).map_err(D::Error::custom)
    }
}
