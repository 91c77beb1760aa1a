"""Bring up saliency_ros on a drone: `ros2 launch saliency_ros drone.launch.py`.

Starts saliency_node and objects_node (lifecycle nodes; they configure and activate
themselves unless the parameters file sets autostart: false) and, with use_sim_camera:=true,
camera_source playing the built-in synthetic scene. All nodes read params_file
(config/drone.yaml by default); camera_topic is remapped onto their camera/image_raw input.
`saliency-ros run` starts the same nodes with the same file where `launch` is not installed.

Examples:
  ros2 launch saliency_ros drone.launch.py camera_topic:=/drone/camera/image_raw
  ros2 launch saliency_ros drone.launch.py use_sim_camera:=true namespace:=drone1
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "saliency_ros"
CAMERA_INPUT = "camera/image_raw"


def generate_launch_description() -> LaunchDescription:
    camera_topic = LaunchConfiguration("camera_topic")
    namespace = LaunchConfiguration("namespace")
    params_file = LaunchConfiguration("params_file")
    use_sim_time = LaunchConfiguration("use_sim_time")
    backend = LaunchConfiguration("backend")
    remappings = [
        (CAMERA_INPUT, camera_topic),
        (f"{CAMERA_INPUT}/compressed", [camera_topic, "/compressed"]),
    ]
    perception_params = [params_file, {"use_sim_time": use_sim_time, "backend": backend}]

    return LaunchDescription([
        DeclareLaunchArgument("camera_topic", default_value="/camera/image_raw",
                              description="camera image topic (sensor_msgs/Image)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the nodes and their outputs"),
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "drone.yaml"]),
                              description="ROS 2 parameters file of the nodes"),
        DeclareLaunchArgument("use_sim_camera", default_value="false",
                              description="also start camera_source (synthetic drone scene)"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (rosbag play --clock)"),
        DeclareLaunchArgument("backend", default_value="cpu",
                              description="ONNX Runtime backend: cpu, cuda or tensorrt"),
        Node(
            package=PACKAGE, executable="camera_source", name="camera_source", namespace=namespace,
            parameters=[params_file, {"use_sim_time": use_sim_time}], remappings=remappings,
            condition=IfCondition(LaunchConfiguration("use_sim_camera")), output="screen",
        ),
        LifecycleNode(
            package=PACKAGE, executable="saliency_node", name="saliency_node", namespace=namespace,
            parameters=perception_params, remappings=remappings, output="screen",
        ),
        LifecycleNode(
            package=PACKAGE, executable="objects_node", name="objects_node", namespace=namespace,
            parameters=perception_params, remappings=remappings, output="screen",
        ),
    ])
