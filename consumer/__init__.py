"""The consumer: accepted claims from Kafka into PostgreSQL, each exactly once in effect."""
