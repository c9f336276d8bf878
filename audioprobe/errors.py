"""Exceptions that carry a message meant for the user, not a traceback."""


class AudioprobeError(Exception):
    """Base class: the message alone tells the user what is wrong and where."""


class LayoutError(AudioprobeError):
    """A dataset on disk does not have the layout its distributor publishes."""


class ManifestError(AudioprobeError):
    """A manifest is malformed: missing columns, duplicate ids, unknown labels."""


class LeakageError(ManifestError):
    """One group (speaker, source recording, patient) sits on both sides of a split."""


class AudioError(AudioprobeError):
    """An audio file cannot be used (unreadable, empty, NaN, too short or too long)."""


class OptionError(AudioprobeError):
    """A dataset adapter's or model family's option that it does not take, or a value it does
    not accept."""


class UnsafeArchiveError(AudioprobeError):
    """A downloaded archive holds a member that could land outside the folder it unpacks into."""


class UnsafeCheckpointError(AudioprobeError):
    """A checkpoint file pickles more than tensors, so loading it could run code."""
