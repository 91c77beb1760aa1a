"""Bring up saliency_ros on a drone: `ros2 launch saliency_ros drone.launch.py`.

Starts saliency_node and objects_node (lifecycle nodes; they configure and activate
themselves unless the parameters file sets autostart: false) and, with use_sim_camera:=true,
camera_source playing the built-in synthetic scene. All nodes read params_file
(config/drone.yaml by default); camera_topic is remapped onto their camera/image_raw input.
With shared_inference:=true, config/shared_inference.yaml is layered over params_file for
saliency_node, which then publishes the object mask from its own inference, and objects_node
is not started.
`saliency-ros run` starts the same nodes with the same file where `launch` is not installed.

Examples:
  ros2 launch saliency_ros drone.launch.py camera_topic:=/drone/camera/image_raw
  ros2 launch saliency_ros drone.launch.py use_sim_camera:=true namespace:=drone1
  ros2 launch saliency_ros drone.launch.py shared_inference:=true
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
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
    shared = LaunchConfiguration("shared_inference")
    node_values = {"use_sim_time": use_sim_time, "backend": backend}
    perception_params = [params_file, node_values]
    shared_params = [params_file, PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "shared_inference.yaml"]),
                     node_values]

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
        DeclareLaunchArgument("shared_inference", default_value="false",
                              description="one SOD net run per frame for /saliency and the object mask "
                              "(config/shared_inference.yaml; objects_node not started)"),
        Node(
            package=PACKAGE, executable="camera_source", name="camera_source", namespace=namespace,
            parameters=[params_file, {"use_sim_time": use_sim_time}], remappings=remappings,
            condition=IfCondition(LaunchConfiguration("use_sim_camera")), output="screen",
        ),
        LifecycleNode(
            package=PACKAGE, executable="saliency_node", name="saliency_node", namespace=namespace,
            parameters=perception_params, remappings=remappings, output="screen",
            condition=UnlessCondition(shared),
        ),
        LifecycleNode(
            package=PACKAGE, executable="saliency_node", name="saliency_node", namespace=namespace,
            parameters=shared_params, remappings=remappings, output="screen",
            condition=IfCondition(shared),
        ),
        LifecycleNode(
            package=PACKAGE, executable="objects_node", name="objects_node", namespace=namespace,
            parameters=perception_params, remappings=remappings, output="screen",
            condition=UnlessCondition(shared),
        ),
    ])
