"""The InfluxDB 1.x history: discover, plan, influx_inspect, convert, publish."""
