//! The series catalog: which series exist, their ids and what they are.
//!
//! A series is one check (service/check) as seen by one probe. The `series` tree maps
//! its id to its [`SeriesMeta`] and `series_by_name` maps `service \0 check \0 probe` to
//! the id. Both are small and read on every ingest and query, so the whole catalog lives
//! in memory too, loaded at open and updated after each committed ingest.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use postflight_probe::report::CheckKind;

use super::codec::{CodecError, Reader, Writer};
use super::keys::{SeriesId, parse_series_id};
use super::{StoreError, corrupt};

/// Format marker of a series meta value.
const META_FORMAT: u8 = 1;

/// What one series is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeriesMeta {
    /// Service the check belongs to.
    pub service: String,
    /// Check name within the service.
    pub check: String,
    /// Probe that runs it.
    pub probe: String,
    /// Kind of the check, as last reported.
    pub kind: CheckKind,
}

fn kind_code(kind: CheckKind) -> u8 {
    match kind {
        CheckKind::Http => 0,
        CheckKind::Tcp => 1,
        CheckKind::Native => 2,
        CheckKind::Env => 3,
        CheckKind::Command => 4,
        CheckKind::Metric => 5,
    }
}

fn kind_from_code(code: u8) -> Result<CheckKind, CodecError> {
    Ok(match code {
        0 => CheckKind::Http,
        1 => CheckKind::Tcp,
        2 => CheckKind::Native,
        3 => CheckKind::Env,
        4 => CheckKind::Command,
        5 => CheckKind::Metric,
        _ => return Err(CodecError("unknown check kind code")),
    })
}

impl SeriesMeta {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Writer::with_capacity(self.service.len() + self.check.len() + 32);
        out.u8(META_FORMAT);
        out.u8(kind_code(self.kind));
        out.str(&self.service);
        out.str(&self.check);
        out.str(&self.probe);
        out.into_bytes()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<SeriesMeta, CodecError> {
        let mut input = Reader::new(bytes);
        if input.u8()? != META_FORMAT {
            return Err(CodecError("unknown series meta format"));
        }
        Ok(SeriesMeta {
            kind: kind_from_code(input.u8()?)?,
            service: input.string()?,
            check: input.string()?,
            probe: input.string()?,
        })
    }
}

/// Check name -> probe name -> series id, for one service.
type ServiceSeries = BTreeMap<String, BTreeMap<String, SeriesId>>;

/// Every known series, by id and by name.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    /// Series by id.
    by_id: HashMap<SeriesId, Arc<SeriesMeta>>,
    /// Series ids by service, check and probe.
    by_name: BTreeMap<String, ServiceSeries>,
    /// The next id to hand out.
    next_id: SeriesId,
    /// Series per probe name (for `limits.series_per_probe`).
    per_probe: HashMap<String, usize>,
}

impl Catalog {
    /// Loads the catalog from the `series` tree.
    pub(crate) fn load(series: &sled::Tree) -> Result<Catalog, StoreError> {
        let mut catalog = Catalog {
            next_id: 1,
            ..Catalog::default()
        };
        for entry in series.iter() {
            let (key, value) = entry?;
            let id = parse_series_id(&key).ok_or(StoreError::Corrupt {
                tree: "series",
                detail: "key is not a series id".into(),
            })?;
            let meta = SeriesMeta::decode(&value).map_err(corrupt("series"))?;
            catalog.insert(id, Arc::new(meta));
        }
        Ok(catalog)
    }

    /// Adds or replaces a series.
    pub(crate) fn insert(&mut self, id: SeriesId, meta: Arc<SeriesMeta>) {
        self.by_name
            .entry(meta.service.clone())
            .or_default()
            .entry(meta.check.clone())
            .or_default()
            .insert(meta.probe.clone(), id);
        self.next_id = self.next_id.max(id.saturating_add(1));
        let probe = meta.probe.clone();
        if self.by_id.insert(id, meta).is_none() {
            *self.per_probe.entry(probe).or_default() += 1;
        }
    }

    /// How many series `probe` has.
    pub(crate) fn count_for_probe(&self, probe: &str) -> usize {
        self.per_probe.get(probe).copied().unwrap_or(0)
    }

    /// Reserves a fresh id (not yet persisted).
    pub(crate) fn allocate(&mut self) -> SeriesId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub(crate) fn lookup(&self, service: &str, check: &str, probe: &str) -> Option<SeriesId> {
        self.by_name.get(service)?.get(check)?.get(probe).copied()
    }

    pub(crate) fn meta(&self, id: SeriesId) -> Option<Arc<SeriesMeta>> {
        self.by_id.get(&id).cloned()
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Every series id, ordered by service, check and probe, with its names; only the
    /// series of `service` when one is given.
    pub(crate) fn iter_ordered<'a>(
        &'a self,
        service: Option<&str>,
    ) -> impl Iterator<Item = (SeriesId, &'a SeriesMeta)> + 'a {
        let services: Box<dyn Iterator<Item = &'a ServiceSeries>> = match service {
            Some(service) => Box::new(self.by_name.get(service).into_iter()),
            None => Box::new(self.by_name.values()),
        };
        services
            .flat_map(|checks| checks.values())
            .flat_map(|probes| probes.values())
            .filter_map(|id| Some((*id, self.by_id.get(id)?.as_ref())))
    }

    /// Every series, ordered by service, check and probe.
    pub(crate) fn all(&self) -> Vec<(SeriesId, Arc<SeriesMeta>)> {
        self.by_name
            .values()
            .flat_map(|checks| checks.values())
            .flat_map(|probes| probes.values())
            .filter_map(|id| Some((*id, self.by_id.get(id)?.clone())))
            .collect()
    }

    /// The series of `service`, optionally narrowed to one check and/or one probe.
    pub(crate) fn matching(
        &self,
        service: &str,
        check: Option<&str>,
        probe: Option<&str>,
    ) -> Vec<(SeriesId, Arc<SeriesMeta>)> {
        let Some(checks) = self.by_name.get(service) else {
            return Vec::new();
        };
        checks
            .iter()
            .filter(|(name, _)| check.is_none_or(|wanted| wanted == name.as_str()))
            .flat_map(|(_, probes)| probes.iter())
            .filter(|(name, _)| probe.is_none_or(|wanted| wanted == name.as_str()))
            .filter_map(|(_, id)| Some((*id, self.by_id.get(id)?.clone())))
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn series_meta_round_trips() {
        let meta = SeriesMeta {
            service: "butler-tax".into(),
            check: "weasyprint-libs".into(),
            probe: "web-1".into(),
            kind: CheckKind::Native,
        };
        assert_eq!(SeriesMeta::decode(&meta.encode()).unwrap(), meta);
    }

    #[test]
    fn matching_narrows_by_check_and_probe() {
        let mut catalog = Catalog::default();
        for (id, check, probe) in [(1, "a", "p1"), (2, "a", "p2"), (3, "b", "p1")] {
            let meta = SeriesMeta {
                service: "svc".into(),
                check: check.into(),
                probe: probe.into(),
                kind: CheckKind::Http,
            };
            catalog.insert(id, Arc::new(meta));
        }
        let ids =
            |v: Vec<(SeriesId, Arc<SeriesMeta>)>| v.iter().map(|(id, _)| *id).collect::<Vec<_>>();
        assert_eq!(ids(catalog.matching("svc", None, None)), vec![1, 2, 3]);
        assert_eq!(ids(catalog.matching("svc", Some("a"), None)), vec![1, 2]);
        assert_eq!(ids(catalog.matching("svc", None, Some("p1"))), vec![1, 3]);
        assert!(catalog.matching("other", None, None).is_empty());
        assert_eq!(catalog.allocate(), 4);
    }
}
