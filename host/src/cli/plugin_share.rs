//! `weir plugin push|pull|sign|keygen`: sharing plugins through registries, signed.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::RuntimeArgs;
use crate::plugin::{digest, PluginRuntime, Policy};
use crate::share::OciRef;

/// Push a component to a registry, as a Wasm OCI artifact.
#[derive(clap::Args)]
pub struct PushArgs {
    /// The component file.
    file: PathBuf,
    /// Where to: `oci://HOST[:PORT]/REPO:TAG`.
    reference: String,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// Pull a plugin from a registry into the local store, verified against its digests, and
/// compile it for this host, so that its first run starts as fast as a restart.
#[derive(clap::Args)]
pub struct PullArgs {
    /// `oci://HOST[:PORT]/REPO@sha256:…`, or `…:TAG`.
    reference: String,
    /// Also write the component to this file.
    #[arg(long, short)]
    output: Option<PathBuf>,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// Sign a component with an ed25519 key; the signature goes into the component.
#[derive(clap::Args)]
pub struct SignArgs {
    /// The component file.
    file: PathBuf,
    /// The secret key: PEM (as `weir plugin keygen` writes it), OpenSSH, or wasmsign2's.
    #[arg(long)]
    key: PathBuf,
    /// Write the signed component here instead of replacing FILE.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

/// Create an ed25519 key pair for signing plugins: NAME.key (secret) and NAME.pub.
#[derive(clap::Args)]
pub struct KeygenArgs {
    /// The path and stem of the two files, e.g. `keys/rides-ci`.
    name: PathBuf,
}

/// Checks that `bytes` load as a plugin, so a broken file is never shared.
fn check_loads(path: &Path, bytes: &[u8], runtime: &RuntimeArgs) -> Result<()> {
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    // Every import is granted here: what a plugin may import is the running host's call.
    PluginRuntime::new(runtime.options())?
        .load_bytes(&name, bytes, &Policy::granting(vec!["*".into()]))
        .with_context(|| format!("{} is not a plugin this host can load", path.display()))?;
    Ok(())
}

pub fn push(args: PushArgs) -> Result<()> {
    let reference = OciRef::parse(&args.reference)?;
    if reference.tag.is_none() {
        bail!("{reference}: name a tag to push to (oci://HOST/REPO:TAG)");
    }
    let bytes = std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    check_loads(&args.file, &bytes, &args.runtime)?;
    let sharing = args.runtime.sharing()?;
    eprintln!("pushing {} ({} bytes, {}) to {reference}…", args.file.display(), bytes.len(), digest(&bytes));
    let (manifest, manifest_digest) = sharing.registries().push(&reference, bytes.clone())?;
    // Keep what was pushed, so this machine runs the pinned reference without a pull.
    let artifact = sharing.store.put(&manifest, &bytes)?;
    if artifact.manifest_digest != manifest_digest {
        bail!("the registry reports manifest {manifest_digest}, but its bytes hash to {}", artifact.manifest_digest);
    }
    println!("{}", reference.pinned(&manifest_digest));
    Ok(())
}

pub fn pull(args: PullArgs) -> Result<()> {
    // Pulling by tag is how a digest is learned; pinning applies where plugins run.
    let mut sharing = args.runtime.sharing()?;
    sharing.allow_unpinned = true;
    let (pinned, artifact) = sharing.fetch(&args.reference)?;
    // Compiling now, into the cache every later start reads, keeps Cranelift off the
    // first `weir run` of this version, and refuses a pull this host could never run.
    check_loads(&artifact.path, &artifact.bytes, &args.runtime)?;
    if let Some(out) = &args.output {
        std::fs::write(out, &artifact.bytes).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("wrote {} ({} bytes)", out.display(), artifact.bytes.len());
    }
    eprintln!("component {} ({} bytes) in {}", artifact.layer_digest, artifact.bytes.len(), artifact.path.display());
    println!("{pinned}");
    Ok(())
}

pub fn sign(args: SignArgs) -> Result<()> {
    let bytes = std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let (signed, key_id) = crate::plugin::sign(&bytes, &args.key)?;
    let out = args.output.as_ref().unwrap_or(&args.file);
    std::fs::write(out, &signed).with_context(|| format!("writing {}", out.display()))?;
    println!("signed {} with key {key_id}: {} ({} bytes)", out.display(), digest(&signed), signed.len());
    Ok(())
}

pub fn keygen(args: KeygenArgs) -> Result<()> {
    let (secret, public, key_id) = crate::plugin::keygen();
    let secret_path = args.name.with_extension("key");
    let public_path = args.name.with_extension("pub");
    for path in [&secret_path, &public_path] {
        if path.exists() {
            bail!("{} exists; keygen never overwrites a key", path.display());
        }
    }
    if let Some(dir) = secret_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_secret(&secret_path, secret.as_bytes())?;
    std::fs::write(&public_path, public).with_context(|| format!("writing {}", public_path.display()))?;
    println!("key {key_id}: secret {} (keep it private), public {}", secret_path.display(), public_path.display());
    Ok(())
}

/// Writes a file only its owner can read.
fn write_secret(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes).with_context(|| format!("writing {}", path.display()))
}
