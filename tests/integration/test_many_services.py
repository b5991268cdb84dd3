"""Many InferenceServices across namespaces, applied at once, are each reconciled correctly (children present,
owned, labelled; status at the spec's generation), and a spec edit on all of them reaches every child. The same
fleet and check as `make bench`, at a smaller count and without timing assertions."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml
from bench.fleet import CREATE, Fleet, edit_of
from bench.operator_process import OperatorProcess
from bench.reconcile_scale import apply_fleet
from bench.tracker import Tracker

from batchpilot_sandbox.cluster.controlplane import ControlPlane
from batchpilot_sandbox.cluster.kubectl import install_crd, kubectl
from support import wait_for

FLEET = Fleet(services=12, namespaces=3, prefix="it-many")


def report(tracker: Tracker, operator: OperatorProcess) -> str:
    wrong = tracker.problems()
    lines = [f"{ns}/{name}: {'; '.join(found)}" for (ns, name), found in list(wrong.items())[:6]]
    return f"{len(wrong)} not reconciled:\n" + "\n".join(lines) + "\noperator log:\n" + operator.log_tail(30)


@pytest.fixture(scope="module")
def fleet(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[Tracker, OperatorProcess]]:
    """The operator on the session's control plane with the fleet created and reconciled; on teardown the
    services are deleted while the operator still runs (it holds finalizers on them)."""
    kubeconfig = control_plane.kubeconfig
    install_crd(kubeconfig)
    kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump_all(FLEET.namespace_manifests()))
    log = tmp_path_factory.mktemp("many-services") / "operator.log"
    with OperatorProcess(control_plane, log, control_interval_s=5) as operator, \
            Tracker(kubeconfig, FLEET) as tracker:
        tracker.begin(CREATE)
        apply_fleet(kubeconfig, FLEET, CREATE)
        wait_for(f"all {FLEET.services} services reconciled", lambda: len(tracker.done) == FLEET.services, 300,
                 lambda: report(tracker, operator))
        yield tracker, operator
        kubectl(kubeconfig, "delete", "inferenceservices", "--all-namespaces", "-l", FLEET.selector,
                "--wait=true", "--timeout=120s")
    kubectl(kubeconfig, "delete", "namespace", "-l", FLEET.selector, "--wait=false")


def test_every_service_has_owned_labelled_children_and_current_status(fleet: tuple[Tracker, OperatorProcess]) -> None:
    tracker, operator = fleet
    assert tracker.problems(fresh=True) == {}
    assert sorted(tracker.done) == sorted(FLEET.keys())
    assert operator.alive()


def test_a_spec_edit_on_every_service_reaches_its_children_and_status(
        fleet: tuple[Tracker, OperatorProcess]) -> None:
    tracker, operator = fleet
    edit = edit_of(CREATE, tracker.templates())
    tracker.begin(edit)
    apply_fleet(operator.control_plane.kubeconfig, FLEET, edit)
    wait_for(f"the edit reconciled on all {FLEET.services} services", lambda: len(tracker.done) == FLEET.services,
             300, lambda: report(tracker, operator))
    assert tracker.problems(fresh=True) == {}
    assert operator.alive()
