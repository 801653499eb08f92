# Production database-affecting replacement requires database owners.
package evident.rules.database_replacement

import data.evident.lib

database_types := {
	"aws_db_instance", "aws_db_parameter_group", "aws_db_option_group", "aws_db_subnet_group",
	"aws_rds_cluster", "aws_rds_cluster_instance", "aws_rds_cluster_parameter_group",
	"aws_dynamodb_table", "aws_docdb_cluster", "aws_neptune_cluster", "aws_redshift_cluster",
	"aws_elasticache_replication_group",
	"google_sql_database_instance", "google_sql_database", "google_spanner_instance",
	"google_spanner_database", "google_bigtable_instance",
	"azurerm_postgresql_flexible_server", "azurerm_mysql_flexible_server", "azurerm_mssql_server",
	"azurerm_mssql_database", "azurerm_cosmosdb_account",
}

deny contains {
	"ruleId": "iac.prod.database.replacement.requires-db-owner",
	"severity": "high",
	"message": "Production database-affecting replacement requires database owner approval.",
	"requiredApprovers": ["database-owners"],
	"evidence": evidence,
} if {
	lib.production
	lib.plan_or_apply
	evidence := sort([sprintf("plan.action.replace.%s", [r.address]) |
		some r in lib.replaced
		r.type in database_types
	])
	count(evidence) > 0
}
