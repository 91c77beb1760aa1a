"""ROS 2 plumbing (rclpy only): the perception lifecycle nodes, the camera source, bring-up."""
