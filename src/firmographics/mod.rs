//! IP → company and IP → location, from data the operator controls: account networks from the rule files,
//! vendor CSV / JSON Lines exports, and MMDB databases, compiled into lookup tables off the hot path.

pub mod company;
pub mod mmdb;
pub mod table;

pub use table::PrefixTable;
