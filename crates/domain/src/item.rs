//! Catalogue items. Catalogue data is not personal and is stored in plain form.

use serde::{Deserialize, Serialize};

use crate::ids::ItemId;

/// A catalogue item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// The item's id.
    pub id: String,
    /// Display title.
    pub title: String,
    /// Category (e.g. a genre or a department), used for diversity and filtering.
    pub category: Option<String>,
    /// Who provides the item (a seller, a studio), used for exposure fairness.
    pub provider: Option<String>,
    /// Free-form attributes, as a JSON object.
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

impl Item {
    /// The item's parsed id.
    pub fn item_id(&self) -> Option<ItemId> {
        ItemId::parse(&self.id).ok()
    }
}
