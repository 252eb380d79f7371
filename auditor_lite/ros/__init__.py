"""ROS 2 integration of the streaming auditor (issue 14), usable without a ROS 2 installation.

- :mod:`auditor_lite.ros.messages`: the message definitions (this package's ``auditor_lite_msgs``
  and the pinned ``audio_common_msgs`` of ros-drivers/audio_common) in a ``rosbags`` typestore,
  conversions between numpy and ``sensor_msgs/Image`` / audio / mask-request / result messages,
  and CDR (de)serialisation. Needs ``rosbags`` (``pip install rosbags``); no torch, no ROS.
- ``auditor_lite_msgs/``: the same messages as a ROS 2 interface package (``package.xml``,
  ``CMakeLists.txt``, ``msg/*.msg``) to build in a ROS 2 workspace.

See docs/ros.md. This module imports nothing, so ``import auditor_lite.ros`` is always cheap.
"""
