//! Every WGSL file parsed and validated by naga without a device (with the prelude, for every
//! specialization the crate uses); every declared entry point exists and binds exactly what the
//! host binds; every params struct matches its WGSL mirror in size.

use dlsvm::gpu::{BindingKind, Extension, ShaderDef};
use dlsvm::kernels::SHADERS;
use naga::valid::{Capabilities, ValidationFlags, Validator};

fn parse(name: &str, source: &str) -> naga::Module {
    naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("shader {name} does not parse:\n{}", e.emit_to_string(source)))
}

/// Validated with what a device gives the shader: subgroup operations only for those that say
/// they need them (so a core shader that uses one fails here).
fn validate(def: &ShaderDef, name: &str, source: &str) -> (naga::Module, naga::valid::ModuleInfo) {
    let module = parse(name, source);
    let caps = match def.extension {
        Extension::Subgroups => Capabilities::SUBGROUP,
        Extension::None => Capabilities::empty(),
    };
    let info = Validator::new(ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("shader {name} does not validate:\n{}", e.emit_to_string(source)));
    (module, info)
}

#[test]
fn every_shader_validates_for_every_specialization() {
    let mut validated = 0;
    for def in SHADERS {
        let specs = (def.specs)();
        assert!(!specs.is_empty(), "shader {} lists no specialization", def.name);
        for spec in specs {
            let source = def.source_with(&spec);
            validate(def, &format!("{} with {:?}", def.name, spec.0), &source);
            validated += 1;
        }
    }
    assert!(validated >= SHADERS.len());
}

#[test]
fn every_entry_point_binds_params_then_inputs_then_outputs() {
    for def in SHADERS {
        let spec = (def.specs)().remove(0);
        let (module, info) = validate(def, def.name, &def.source_with(&spec));
        let names: Vec<&str> = module.entry_points.iter().map(|e| e.name.as_str()).collect();
        for &(entry, _, _) in def.entries {
            let idx = names
                .iter()
                .position(|n| *n == entry)
                .unwrap_or_else(|| panic!("shader {} has no entry point {entry} (has {names:?})", def.name));
            let fi = info.get_entry_point(idx);
            let mut used: Vec<(u32, BindingKind)> = Vec::new();
            for (h, var) in module.global_variables.iter() {
                if fi[h].is_empty() {
                    continue;
                }
                let Some(binding) = &var.binding else { continue };
                assert_eq!(binding.group, 0, "{}::{entry}: group must be 0", def.name);
                let kind = match var.space {
                    naga::AddressSpace::Storage { access } if access.contains(naga::StorageAccess::STORE) => {
                        BindingKind::Write
                    }
                    naga::AddressSpace::Storage { .. } => BindingKind::Read,
                    naga::AddressSpace::Uniform => BindingKind::Uniform,
                    other => panic!("{}::{entry}: unexpected address space {other:?}", def.name),
                };
                used.push((binding.binding, kind));
            }
            used.sort_by_key(|u| u.0);
            let want: Vec<(u32, BindingKind)> =
                def.kinds(entry).unwrap().into_iter().enumerate().map(|(b, k)| (b as u32, k)).collect();
            assert_eq!(used, want, "{}::{entry}: bindings the shader uses vs what the host binds", def.name);
        }
        // No entry point in the file that the host does not know about.
        for n in &names {
            assert!(
                def.entries.iter().any(|e| e.0 == *n),
                "shader {}: entry point {n} is not registered",
                def.name
            );
        }
    }
}

#[test]
fn params_structs_match_their_wgsl_mirrors() {
    for def in SHADERS {
        let spec = (def.specs)().remove(0);
        let module = parse(def.name, &def.source_with(&spec));
        let want = def.params.wgsl;
        let wgsl = module
            .types
            .iter()
            .find_map(|(_, t)| match (&t.name, &t.inner) {
                (Some(n), naga::TypeInner::Struct { span, .. }) if n == want => Some(*span as usize),
                _ => None,
            })
            .unwrap_or_else(|| panic!("shader {}: no struct {want} in the prelude", def.name));
        let host = def.params.size;
        assert_eq!(host, wgsl, "{}: host {want} is {host} bytes, the WGSL struct {wgsl}", def.name);
        assert_eq!(host % 16, 0, "{}: uniform structs are padded to 16 bytes", def.name);
    }
}

/// No shader declares a struct of its own or redefines the prelude's helpers: what is shared lives
/// in shaders/common.wgsl only.
#[test]
fn shared_wgsl_lives_in_the_prelude_only() {
    for def in SHADERS {
        for (name, source) in def.parts.iter().chain([&(def.file(), def.source)]) {
            for line in source.lines() {
                let t = line.trim_start();
                assert!(
                    !t.starts_with("struct "),
                    "{name}.wgsl declares `{t}`: params structs belong in the prelude"
                );
                for f in ["fn epilogue", "fn thread_index", "fn group_index", "fn workgroup_sum", "fn win_lo"]
                {
                    assert!(!t.starts_with(f), "{name}.wgsl redefines the prelude's `{f}`");
                }
            }
        }
    }
}

#[test]
fn a_broken_shader_is_rejected() {
    // The validation above can fail: a shader with a type error does not validate.
    let def = SHADERS[0];
    let source = def.source_with(&(def.specs)().remove(0)).replace("var acc = 0.0;", "var acc = 0u;");
    let module = naga::front::wgsl::parse_str(&source);
    let ok =
        module.map(|m| Validator::new(ValidationFlags::all(), Capabilities::empty()).validate(&m).is_ok());
    assert!(!matches!(ok, Ok(true)), "a type error went unnoticed");
}
