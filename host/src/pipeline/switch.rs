//! The run loop's side of a plugin change the deployer asked for (deploy, rollback,
//! optimized code, shadow, promote, discard): carried out right after a checkpoint, at
//! the positions it holds, and answered with where it took effect.

use std::time::Instant;

use super::build::Pipeline;
use super::deploy::{Change, Deployer, Swap, Switched};
use super::swap::How;

/// Makes a change the deployer asked for. Called right after a checkpoint is taken, at
/// the positions it holds, so no offset is processed by both versions, and a shadow
/// starts from exactly the live state. Returns whether a live stage switched.
pub(super) fn switch(pipeline: &mut Pipeline, swap: Swap, deployer: &Deployer, positions: Vec<(i32, i64)>) -> bool {
    let started = Instant::now();
    let Swap { change, reply } = swap;
    let (plan, plugin, how) = match change {
        Change::Switch { plan, plugin, how } => (plan, *plugin, Some(how)),
        Change::Optimize { plan, plugin } => (plan, *plugin, None),
        Change::Shadow { plan, pipeline: shadow } => {
            let (stage, version) = (plan.id, super::stages::short(&plan.version()));
            let outcome = pipeline.start_shadow(plan, *shadow).map_err(|e| format!("{e:#}"));
            if outcome.is_ok() {
                eprintln!("\n{version} runs in the shadow of {stage} from {}", positions_text(&positions));
            }
            let _ = reply.send(outcome.map(|()| switched_at(pipeline, positions, started)));
            return false;
        }
        Change::Discard => {
            let outcome = match pipeline.end_shadow("discarded") {
                Some(_) => Ok(switched_at(pipeline, positions, started)),
                None => Err("no shadow is running".to_string()),
            };
            let _ = reply.send(outcome);
            return false;
        }
        Change::Promote => {
            let Some(plan) = pipeline.shadow_plan() else {
                let _ = reply.send(Err("no shadow is running".to_string()));
                return false;
            };
            match plan.start() {
                Ok(plugin) => (plan, plugin, Some(How::Promote)),
                Err(e) => {
                    let _ = reply.send(Err(format!("{e:#}")));
                    return false;
                }
            }
        }
    };
    let stage = plan.id;
    let outcome = pipeline.switch(plan.clone(), plugin, how, positions.clone());
    let answer = match outcome {
        Ok(()) => {
            let (version, at) = (plan_version(pipeline, stage), positions_text(&positions));
            if how.is_some() {
                pipeline.stats.swaps += 1;
                if how == Some(How::Rollback) {
                    if let Some(d) = pipeline.deployments.last_mut() {
                        d.reason = deployer.take_reason();
                    }
                }
                deployer.switched(plan, pipeline.deployments.last().cloned(), &pipeline.table);
                eprintln!("\n{stage} switched to {version} at {at}");
            } else {
                deployer.switched(plan, None, &pipeline.table);
                eprintln!("\n{stage} runs optimized code of {version} from {at}");
            }
            Ok(switched_at(pipeline, positions, started))
        }
        Err(e) => Err(format!("{e:#}")),
    };
    let switched = answer.is_ok();
    let _ = reply.send(answer);
    switched
}

fn switched_at(pipeline: &Pipeline, positions: Vec<(i32, i64)>, started: Instant) -> Switched {
    let switch_us = started.elapsed().as_micros() as u64;
    Switched { after_checkpoint: pipeline.stats.checkpoints, from_offsets: positions, switch_us }
}

fn plan_version(pipeline: &Pipeline, stage: super::StageId) -> String {
    pipeline.plans().iter().find(|p| p.id == stage).map(|p| super::stages::short(&p.version())).unwrap_or_default()
}

fn positions_text(positions: &[(i32, i64)]) -> String {
    if positions.is_empty() {
        return "the start".into();
    }
    positions.iter().map(|(p, o)| format!("{p}:{o}")).collect::<Vec<_>>().join(", ")
}
