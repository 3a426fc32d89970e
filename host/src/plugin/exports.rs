//! A plugin's exported functions, typed, for every contract version the host runs.
//!
//! The generated `Guest` structs look their interface up under one fixed name
//! (`weir:plugin/parser@0.2.0`), so a 0.1.0 component could not be run through them. The
//! kinds' functions have the same signatures in 0.1.0 and 0.2.0 (what changed are the
//! imports), so the host looks them up under the name the component exports and types
//! them with the current bindings' types. Each is typed once at load, so a component
//! whose signatures differ is refused there, naming the function; and again at each
//! call, against borrowed arguments, so no batch or state is copied on its way in.

use wasmtime::component::{ComponentNamedList, Func, Instance, InstancePre, Lift, Lower};
use wasmtime::Store;

use super::bindings::{aggregator, parser, transform, types, validator};
use super::component::PluginKind;
use super::convert::RawBatchRef;
use super::state::PluginState;

type Res<T> = Result<T, String>;
type Batch<'a> = &'a types::EventBatch;

/// The exports of one instance: its kind and its functions by name.
pub(crate) struct Exports {
    pub kind: PluginKind,
    funcs: Vec<(&'static str, Func)>,
}

/// Looks up `kind`'s functions in `interface` (the export's full name) of a fresh instance.
pub(crate) fn load(
    kind: PluginKind,
    interface: &str,
    pre: &InstancePre<PluginState>,
    store: &mut Store<PluginState>,
    instance: &Instance,
) -> wasmtime::Result<Exports> {
    let component = pre.component();
    let iface = component
        .get_export_index(None, interface)
        .ok_or_else(|| wasmtime::format_err!("the component does not export `{interface}`"))?;
    let mut funcs = Vec::new();
    for &name in kind.functions() {
        let index = component
            .get_export_index(Some(&iface), name)
            .ok_or_else(|| wasmtime::format_err!("`{interface}` has no function `{name}`"))?;
        let func = instance
            .get_func(&mut *store, index)
            .ok_or_else(|| wasmtime::format_err!("`{interface}.{name}` is not a function"))?;
        funcs.push((name, func));
    }
    let exports = Exports { kind, funcs };
    exports.check(store).map_err(|e| e.context(format!("`{interface}` does not match the contract")))?;
    Ok(exports)
}

impl PluginKind {
    /// The functions a kind's interface exports.
    fn functions(self) -> &'static [&'static str] {
        match self {
            PluginKind::Parser => &["init", "parse"],
            PluginKind::Validator => &["init", "validate"],
            PluginKind::Aggregator => &["init", "create", "fold", "merge", "emit", "migrate"],
            PluginKind::Transform => &["init", "apply"],
        }
    }
}

impl Exports {
    fn get(&self, name: &str) -> Func {
        self.funcs.iter().find(|(n, _)| *n == name).map(|(_, f)| *f).expect("load found every function of the kind")
    }

    /// Calls `name` with `params` and unwraps its one result.
    fn call<P: ComponentNamedList + Lower, R: Lift + 'static>(
        &self,
        store: &mut Store<PluginState>,
        name: &str,
        params: P,
    ) -> wasmtime::Result<R>
    where
        (R,): ComponentNamedList + Lift,
    {
        let f = self.get(name).typed::<P, (R,)>(&*store)?;
        f.call(store, params).map(|(r,)| r)
    }

    fn check(&self, store: &Store<PluginState>) -> wasmtime::Result<()> {
        fn is<P: ComponentNamedList + Lower, R: ComponentNamedList + Lift>(
            exports: &Exports,
            store: &Store<PluginState>,
            name: &str,
        ) -> wasmtime::Result<()> {
            exports.get(name).typed::<P, R>(store).map(|_| ()).map_err(|e| e.context(format!("function `{name}`")))
        }
        type Config = (&'static str,);
        type States = &'static [Vec<u8>];
        type Bytes = &'static [u8];
        match self.kind {
            PluginKind::Parser => {
                is::<Config, (Res<parser::ParserInfo>,)>(self, store, "init")?;
                is::<(RawBatchRef<'static>,), (parser::ParseOutput,)>(self, store, "parse")
            }
            PluginKind::Validator => {
                is::<Config, (Res<validator::ValidatorInfo>,)>(self, store, "init")?;
                is::<(Batch<'static>,), (Vec<types::Violation>,)>(self, store, "validate")
            }
            PluginKind::Aggregator => {
                is::<Config, (Res<aggregator::AggregatorInfo>,)>(self, store, "init")?;
                is::<(), (Vec<u8>,)>(self, store, "create")?;
                is::<(States, Batch<'static>, &'static [u32]), (Res<Vec<Vec<u8>>>,)>(self, store, "fold")?;
                is::<(Bytes, Bytes), (Res<Vec<u8>>,)>(self, store, "merge")?;
                is::<(States,), (Res<types::EventBatch>,)>(self, store, "emit")?;
                is::<(u32, Bytes), (Res<Vec<u8>>,)>(self, store, "migrate")
            }
            PluginKind::Transform => {
                is::<Config, (Res<transform::TransformInfo>,)>(self, store, "init")?;
                is::<(Batch<'static>,), (transform::TransformOutput,)>(self, store, "apply")
            }
        }
    }

    pub fn init_parser(
        &self,
        store: &mut Store<PluginState>,
        config: &str,
    ) -> wasmtime::Result<Res<parser::ParserInfo>> {
        self.call(store, "init", (config,))
    }

    pub fn init_validator(
        &self,
        store: &mut Store<PluginState>,
        config: &str,
    ) -> wasmtime::Result<Res<validator::ValidatorInfo>> {
        self.call(store, "init", (config,))
    }

    pub fn init_aggregator(
        &self,
        store: &mut Store<PluginState>,
        config: &str,
    ) -> wasmtime::Result<Res<aggregator::AggregatorInfo>> {
        self.call(store, "init", (config,))
    }

    pub fn init_transform(
        &self,
        store: &mut Store<PluginState>,
        config: &str,
    ) -> wasmtime::Result<Res<transform::TransformInfo>> {
        self.call(store, "init", (config,))
    }

    pub fn parse(
        &self,
        store: &mut Store<PluginState>,
        batch: RawBatchRef<'_>,
    ) -> wasmtime::Result<parser::ParseOutput> {
        self.call(store, "parse", (batch,))
    }

    pub fn validate(
        &self,
        store: &mut Store<PluginState>,
        events: Batch<'_>,
    ) -> wasmtime::Result<Vec<types::Violation>> {
        self.call(store, "validate", (events,))
    }

    pub fn apply(
        &self,
        store: &mut Store<PluginState>,
        events: Batch<'_>,
    ) -> wasmtime::Result<transform::TransformOutput> {
        self.call(store, "apply", (events,))
    }

    pub fn create(&self, store: &mut Store<PluginState>) -> wasmtime::Result<Vec<u8>> {
        self.call(store, "create", ())
    }

    pub fn fold(
        &self,
        store: &mut Store<PluginState>,
        states: &[Vec<u8>],
        events: Batch<'_>,
        groups: &[u32],
    ) -> wasmtime::Result<Res<Vec<Vec<u8>>>> {
        self.call(store, "fold", (states, events, groups))
    }

    pub fn merge(&self, store: &mut Store<PluginState>, a: &[u8], b: &[u8]) -> wasmtime::Result<Res<Vec<u8>>> {
        self.call(store, "merge", (a, b))
    }

    pub fn emit(&self, store: &mut Store<PluginState>, states: &[Vec<u8>]) -> wasmtime::Result<Res<types::EventBatch>> {
        self.call(store, "emit", (states,))
    }

    pub fn migrate(&self, store: &mut Store<PluginState>, from: u32, state: &[u8]) -> wasmtime::Result<Res<Vec<u8>>> {
        self.call(store, "migrate", (from, state))
    }
}
