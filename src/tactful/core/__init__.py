"""The pure decision core: no Kafka, no wall clock, no environment."""
