"""BinSort: sort inspected parts off a belt into the good bin and the reject bin."""

from __future__ import annotations

import numpy as np

from envs.core import Feature
from envs.tasks.conveyor_pick import ConveyorPick, ConveyorPickExpert, PickV1, pick_features
from twin.parts import Part


class BinSort(ConveyorPick):
    """Put every good part in the good bin and every defective one in the reject bin.

    **Task description:** parts ride a belt through an inspection arch, where a camera looks at
    them and a sensor reads each part's defect flag once. Some parts carry a visible defect (a
    dark stain on every face, an undersized body, a wrong colour). The Panda must pick each part
    off the belt before it reaches the end and release it in the blue good-parts bin or, if it is
    defective, in the red reject bin. Actions as in ConveyorPick.

    **Randomizations:** the feeder's seeded part stream (arrival times, part types, lateral
    offset, yaw) and which parts are defective and how (35% by default); the sensor's errors
    (3% false positives, 3% false negatives by default).

    **Success conditions:** every part of the episode lies in the bin it belongs in. The episode
    terminates when every part is placed, missed or lost; a 40 s time limit truncates it.

    **Difficulty knobs:** ConveyorPick's (``parts``, ``belt_speed``, ``arrival_interval``) and
    ``sensor`` (default True): with ``sensor=False`` the observation carries no sensor reading,
    so the defect must be seen in the images.

    Observations (``rgb``): the ``top`` camera's 84x84 view of the pick zone as ``rgb``, and the
    wrist camera's 84x84 view of what the fingers hold as ``wrist`` (the stain, the colour and
    the size of a gripped part show there), with the state vector as ``state``.

    Observations (``state``, 28 numbers): ConveyorPick's 23 (the good bin's drop point in place
    of the bin's); the target part's reading: inspected (1) and read as defective (1); the reject
    bin's drop point relative to the tool (3).

    **Dense reward:** ConveyorPick's staged reward, with the carry and release stages towards
    the bin the part belongs in (by its true defect) and only a part in its right bin counting as
    placed; a part in the wrong bin earns nothing, so the return is the parts sorted right.
    **Sparse reward:** +1 per part placed in its right bin.

    ``info`` carries ConveyorPick's keys (``parts_placed`` counts parts in their right bins) and
    ``kpis`` with the quality figures (``good_shipped``, ``defects_escaped``, ``false_rejects``,
    ``defects_caught``, ``first_pass_yield``).
    """

    layout = "bin_sort"
    obs_camera = "top"
    extra_obs_cameras = ("wrist",)

    task_knobs = ("sensor",)
    knob_names = (*ConveyorPick.knob_names, "sensor")

    def __init__(self, twin, reward_type: str = "dense", sensor: bool = True) -> None:
        super().__init__(twin, reward_type)
        if not isinstance(sensor, bool):
            raise ValueError(f"BinSort: sensor must be true or false, got {sensor!r}")
        good = [b for b in twin.bins if b.config.accepts == "good"]
        reject = [b for b in twin.bins if b.config.accepts == "defective"]
        if not good or not reject:
            raise ValueError('BinSort needs a layout with a bin that accepts "good" and one that accepts "defective"')
        self.bin, self.reject, self.sensor = good[0], reject[0], sensor
        self._drop_list = self.drop_for_bin(self.bin)
        self.drop_point = np.array(self._drop_list)
        self._reject_list = self.drop_for_bin(self.reject)

    def task_bins(self) -> list:
        return [self.bin, self.reject]

    def bin_for(self, part: Part):
        return self.reject if part.defect is not None else self.bin

    def drop_for(self, part: Part) -> list[float]:
        return self._reject_list if part.defect is not None else self._drop_list

    def placed_right(self, part: Part) -> bool:
        return part.location == self.bin_for(part).name

    def _more_obs(self, ex: float, ey: float, ez: float, part: Part | None) -> tuple[float, ...]:
        seen = part is not None and part.reading is not None and self.sensor
        rx, ry, rz = self._reject_list
        return (float(seen), float(seen and part.reading == "reject"), rx - ex, ry - ey, rz - ez)


class BinSortV1(PickV1, BinSort):
    """BinSort, version 1: the tool's state in the observation, rewards that teach (as
    ``ConveyorPick-v1``).

    **Task description, randomizations, success conditions and knobs:** as ``BinSort-v0``.

    **Observation** (``state``, 31 numbers): ``-v0``'s 28 (``ConveyorPick-v1``'s first 23, the
    sensor's reading of the target part: inspected, read as defective, and the reject bin's drop
    point relative to the tool), then the tool's state (closed, seconds since switched,
    gripping). With ``sensor=False`` the two reading numbers are 0.

    **Dense reward:** ``ConveyorPick-v1``'s stages, towards the bin the part belongs in; a part
    in the wrong bin earns nothing (its progress is taken back when it lands there).

    **Ceiling:** the policy sorts by the sensor, which is wrong at its error rates (3% each way):
    the scripted expert sorting by the sensor's reading (``observable``) scores the success a
    perfect student can reach.
    """

    def base_features(self) -> list[Feature]:
        return [
            *pick_features(),
            ("part_inspected", "0/1", 0.0, 1.0),
            ("part_read_defective", "0/1", 0.0, 1.0),
            *[(f"reject_drop_minus_tool_{a}", "m", -10.0, 10.0) for a in "xyz"],
        ]


class BinSortExpert(ConveyorPickExpert):
    """ConveyorPick's picker, releasing each part over the bin it belongs in. It reads the part's
    true defect, as an inspector looking at the part would; the sensor's reading is for policies.

    With ``observable`` it sorts by the inspection sensor's reading instead (a part not yet read
    counts as good), as a policy that observes the sensor must: the teacher of such a student,
    and the measure of the ceiling the sensor's errors put on its success."""

    observable: bool = False

    def drop_for(self, part: Part) -> list[float]:
        task: BinSort = self.task
        if not self.observable:
            return task.drop_for(part)
        return task._reject_list if part.reading == "reject" else task._drop_list
